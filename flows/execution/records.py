"""Writing a batch of a run's events, and what they change, in one transaction.

Events are the source of truth (they hold the checkpoints); node runs and the run row are
projections of them kept for fast reads, updated from the same batch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from engine import Checkpoint
from flows.models import NodeRun, Run, RunEvent


def parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def store_events(run_id: Any, events: list[dict[str, Any]],
                 node_types: dict[str, str] | None = None) -> None:
    """Store events (in seq order) and project them onto the run and its node runs."""
    if not events:
        return
    with transaction.atomic():
        _insert_events(run_id, events)
        _project_node_runs(run_id, [e for e in events if e["scope"] is None], node_types or {})
        _project_run(run_id, events)


def end_run(run_id: Any, status: str, message: str) -> None:
    """End a run that no engine will continue (a child its parent gave up) with the events it
    lacks, as the engine would end it: every node execution it started and never ended (an
    open question, a node cut off by a crash) ends `cancelled`, then run.finished, with the
    executing time and the recovered count its stored events show (dsl.md §6)."""
    row = Run.objects.get(pk=run_id)
    stored = [event.envelope() for event in RunEvent.objects.filter(run_id=run_id).order_by("seq")]
    checkpoint = Checkpoint.from_events(stored) if stored else Checkpoint()
    ts = timezone.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    events, seq = [], row.last_seq
    for node, execution in checkpoint.unfinished.items():
        seq += 1
        error = {"code": "cancelled", "message": message, "node": node,
                 "attempt": execution.attempts}
        events.append(_event(run_id, seq, ts, "node.finished", {
            "node": node, "status": "cancelled", "outputs": None, "error": error,
            "elapsed_ms": _ms_since(execution.started_at, ts), "attempts": execution.attempts}))
    recovered = sum(result.status == "recovered" for result in checkpoint.finished.values())
    error = {"code": "cancelled", "message": message, "node": None, "attempt": None}
    events.append(_event(run_id, seq + 1, ts, "run.finished", {
        "status": status, "outputs": None, "answer": None, "error": error,
        "elapsed_ms": round(checkpoint.elapsed_ms, 3), "recovered": recovered}))
    store_events(run_id, events)


def _event(run_id: Any, seq: int, ts: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "type": kind, "ts": ts, "run": str(run_id), "scope": None,
            "item": None, "data": data}


def _ms_since(started: str | None, ts: str) -> float:
    if not started:
        return 0.0
    return round(max(0.0, (parse_ts(ts) - parse_ts(started)).total_seconds() * 1000), 3)


def _insert_events(run_id: Any, events: list[dict[str, Any]]) -> None:
    """INSERT the events with one executemany. Not `bulk_create`: building and compiling a
    model instance per event cost ~150 µs an event, most of a burst's time to its watchers
    (bench/events.py); the values are prepared by the model's own fields all the same."""
    connection = connections[router.db_for_write(RunEvent)]
    fields = [RunEvent._meta.get_field(name)
              for name in ("run", "seq", "type", "ts", "scope", "item", "data")]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(RunEvent._meta.db_table)} "
           f"({', '.join(quote(field.column) for field in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    run_field, data_field = fields[0], fields[-1]
    run_value = run_field.get_db_prep_save(run_id, connection)
    rows = [(run_value, e["seq"], e["type"], e["ts"], e["scope"], e["item"],
             data_field.get_db_prep_save(e["data"], connection)) for e in events]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _project_run(run_id: Any, events: list[dict[str, Any]]) -> None:
    changes: dict[str, Any] = {"last_seq": events[-1]["seq"]}
    waiting_changed = False
    run = Run.objects.only("waiting").get(pk=run_id)
    waiting = list(run.waiting)
    # Counted as they end, so a running run shows them (run.finished then sets the total).
    recovered = sum(event["type"] == "node.finished" and event["scope"] is None
                    and event["data"]["status"] == "recovered" for event in events)
    if recovered:
        changes["recovered"] = F("recovered") + recovered
    for event in events:
        kind, data = event["type"], event["data"]
        if kind == "run.started":
            changes.update(status=Run.Status.RUNNING, started_at=parse_ts(event["ts"]))
        elif kind == "run.waiting":
            waiting.append(data)
            waiting_changed = True
        elif kind == "run.resumed":
            waiting = [q for q in waiting if q["node"] != data["node"]]
            waiting_changed = True
        elif kind == "run.finished":
            changes.update(status=data["status"], outputs=data["outputs"], answer=data["answer"],
                           error=data["error"], elapsed_ms=data["elapsed_ms"],
                           recovered=data["recovered"], finished_at=parse_ts(event["ts"]))
            waiting, waiting_changed = [], True
    if waiting_changed:
        changes["waiting"] = waiting
    Run.objects.filter(pk=run_id).update(**changes)


def _project_node_runs(run_id: Any, events: list[dict[str, Any]],
                       node_types: dict[str, str]) -> None:
    if not events:
        return
    states: dict[str, dict[str, Any]] = {}
    for event in events:
        kind, data = event["type"], event["data"]
        node = data.get("node")
        if kind == "node.started":
            state = states.setdefault(node, {"position": event["seq"]})
            state.update(type=data["type"], status="running", attempts=data["attempt"],
                         inputs=data["inputs"])
            state.setdefault("started_at", parse_ts(event["ts"]))
        elif kind == "node.finished":
            state = states.setdefault(node, {"position": event["seq"]})
            state.update(status=data["status"], outputs=data["outputs"], error=data["error"],
                         attempts=data["attempts"], elapsed_ms=data["elapsed_ms"],
                         finished_at=parse_ts(event["ts"]), logs=data.get("logs"))
        elif kind == "node.skipped":
            states.setdefault(node, {"position": event["seq"]}).update(status="skipped",
                                                                      attempts=0)
        elif kind == "run.waiting":
            states.setdefault(node, {"position": event["seq"]})["status"] = "waiting"
    existing = {row.node: row for row in NodeRun.objects.filter(run_id=run_id,
                                                                node__in=list(states))}
    created, updated, fields = [], [], set()
    for node, state in states.items():
        row = existing.get(node)
        if row is None:
            state.setdefault("type", node_types.get(node, ""))
            created.append(NodeRun(run_id=run_id, node=node, **state))
            continue
        state.pop("position", None)
        if row.started_at:
            state.pop("started_at", None)
        for name, value in state.items():
            setattr(row, name, value)
        fields.update(state)
        updated.append(row)
    if created:
        NodeRun.objects.bulk_create(created)
    if updated:
        NodeRun.objects.bulk_update(updated, sorted(fields))
