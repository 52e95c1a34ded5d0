"""Writing batches of runs' events, and what they change, in one transaction.

Events are the source of truth (they hold the checkpoints); node runs and the run row are
projections of them kept for fast reads, updated from the same batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import DataError, connections, router, transaction
from django.db.models import F

from engine import events as ev
from engine.events import Event
from flows.errors import LeaseLost
from flows.models import NodeRun, Run, RunEvent
from tracing.logs import warn_now_and_then

logger = logging.getLogger(__name__)


def parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass(slots=True)
class Batch:
    """Events of one run to store (in seq order), with what fences and projects them.

    With a `lease` (flows/services/lifecycle.py) the batch is fenced: when another worker
    has claimed the run since, nothing of it is written and LeaseLost is its outcome. The
    check rides on the update of the run row that every batch makes: it costs no extra
    statement. A batch that finishes the run gives the lease up with it (the execution
    writes nothing after `run.finished`): whoever sees the run finished sees it let go.

    `known_nodes`, when the caller knows it (the sink of an execution), names the nodes that
    may already have a node-run row: only those are looked up before the projection.

    Storing a batch again is harmless: a store can commit and its caller never hear so (the
    executor stopping while the store's thread commits, a connection dropped with the
    COMMIT's answer), and the sink then sends the same events again. Events the run has
    stored already are skipped (by seq: under a lease, only this execution wrote them), so
    the retry neither fails on the unique (run, seq) nor counts anything twice."""

    run_id: Any
    events: list[Event]
    node_types: dict[str, str] = field(default_factory=dict)
    lease: Any = None
    known_nodes: set[str] | None = None


def store_events(run_id: Any, events: list[Event], node_types: dict[str, str] | None = None,
                 lease: Any = None, known_nodes: set[str] | None = None) -> None:
    """Store one run's events and project them onto the run and its node runs, in one
    transaction (see Batch); raises LeaseLost when the lease no longer holds."""
    if not events:
        return
    [outcome] = _store_together([Batch(run_id, events, node_types or {}, lease, known_nodes)])
    if isinstance(outcome, LeaseLost):
        raise outcome


def store_batches(batches: list[Batch]) -> list[list[Event] | Exception]:
    """Store the batches of several runs in one transaction (a group commit: the executor
    stores together what its runs emitted meanwhile). Each batch's outcome: the events as
    stored (to publish exactly those), or the error that refused it. A batch whose lease is
    lost is refused alone; when the database refuses the group (a NUL character, a value it
    cannot store), each batch is stored on its own, so only the batch at fault fails."""
    if len(batches) > 1:
        try:
            return _store_together(batches)
        except Exception as error:
            warn_now_and_then(logger, "group", "storing %d runs' batches together failed "
                              "(%r): storing each alone", len(batches), error)
    outcomes: list[list[Event] | Exception] = []
    for batch in batches:
        try:
            outcomes.append(store_events_cleaning_nul(
                batch.run_id, batch.events, batch.node_types, batch.lease, batch.known_nodes))
        except Exception as error:
            outcomes.append(error)
    return outcomes


def _store_together(batches: list[Batch]) -> list[list[Event] | Exception]:
    # Rows are locked in one order (by run) so that two groups never wait for each other.
    order = sorted(range(len(batches)), key=lambda index: str(batches[index].run_id))
    outcomes: list[list[Event] | Exception] = [[] for _ in batches]
    with transaction.atomic():
        kept: list[Batch] = []
        for index in order:
            batch = batches[index]
            try:  # first, as the fence: a refused batch writes nothing
                new = _project_run(batch.run_id, batch.events, batch.lease)
            except LeaseLost as lost:
                outcomes[index] = lost
                continue
            outcomes[index] = batch.events  # all of them published: none was, if sent again
            if new is not batch.events:
                # Sent again: the sender never heard of the node-run rows the first store
                # made, so every node is looked up (a rare path).
                batch = replace(batch, events=new, known_nodes=None)
            if batch.events:
                kept.append(batch)
        _insert_events(kept)
        created: list[NodeRun] = []
        for batch in kept:
            created += _project_node_runs(
                batch.run_id, [e for e in batch.events if e["scope"] is None],
                batch.node_types, batch.known_nodes)
        if created:
            NodeRun.objects.bulk_create(created)
    return outcomes


def projected_nodes(events: list[Event]) -> set[str]:
    """The nodes these events give a node-run row (`_project_node_runs`)."""
    return {e["data"]["node"] for e in events if e["scope"] is None and e["type"] in _NODE_ROWS}


NUL = "\x00"
REPLACEMENT = "\ufffd"


def without_nul(value: Any) -> Any:
    """`value` with every NUL character (in keys and strings) replaced by U+FFFD: PostgreSQL
    stores no NUL in text or jsonb, and a node's outputs may hold one (`chr(0)` from code, a
    binary HTTP body). Only called after a store failed, so values without NUL cost nothing."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, dict):
        return {without_nul(key): without_nul(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [without_nul(inner) for inner in value]
    return value


def has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def store_events_cleaning_nul(run_id: Any, events: list[Event],
                              node_types: dict[str, str] | None = None,
                              lease: Any = None, known_nodes: set[str] | None = None
                              ) -> list[Event]:
    """Store events; when the database refuses a NUL character in them, store them again
    with it replaced. Returns the events as stored (to publish exactly those)."""
    try:
        store_events(run_id, events, node_types, lease, known_nodes)
    except (DataError, ValueError):
        if not has_nul(events):
            raise
        events = without_nul(events)
        store_events(run_id, events, node_types, lease, known_nodes)
    return events


def stored_events(run_id: Any) -> list[Event]:
    """A run's stored events in order: what its checkpoint is rebuilt from."""
    rows = RunEvent.objects.filter(run_id=run_id).order_by("seq")
    return [row.envelope() for row in rows]


def _insert_events(batches: list[Batch]) -> None:
    """INSERT the batches' events with one executemany. Not `bulk_create`: building and
    compiling a model instance per event cost ~150 µs an event, most of a burst's time to its
    watchers (bench/events.py); the values are prepared by the model's own fields all the
    same."""
    if not batches:
        return
    connection = connections[router.db_for_write(RunEvent)]
    fields = [RunEvent._meta.get_field(name)
              for name in ("run", "seq", "type", "ts", "scope", "item", "data")]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(RunEvent._meta.db_table)} "
           f"({', '.join(quote(field.column) for field in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    run_field, data_field = fields[0], fields[-1]
    rows = []
    for batch in batches:
        run_value = run_field.get_db_prep_save(batch.run_id, connection)
        rows += [(run_value, e["seq"], e["type"], e["ts"], e["scope"], e["item"],
                  data_field.get_db_prep_save(e["data"], connection)) for e in batch.events]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _project_run(run_id: Any, events: list[Event], lease: Any) -> list[Event]:
    """Fence the batch and project it onto the run row; the events of it to insert. Usually
    all of them, in one UPDATE that is also the fence (it matches only while the lease holds
    and the run has stored nothing from the batch's first seq on). Else one more look tells a
    lost lease (LeaseLost) from a batch sent again (see Batch): then only its events not
    stored yet are projected and returned. A batch without a lease is written as it is: a
    seq stored already fails on the unique index, as it should when two writers met."""
    if lease is None:  # no execution's own batch (closing events): never sent twice
        if not Run.objects.filter(pk=run_id).update(**_run_changes(run_id, events, lease)):
            raise LeaseLost(f"run {run_id}: the run is gone; the batch is refused")
        return events
    rows = lease.rows()
    if rows.filter(last_seq__lt=events[0]["seq"]).update(**_run_changes(run_id, events, lease)):
        return events
    stored_to = rows.values_list("last_seq", flat=True).first()
    if stored_to is None:
        if _finished_already(run_id, events):
            return []
        raise LeaseLost(f"run {run_id}: another worker holds the lease; the batch is refused")
    stored = set(RunEvent.objects.filter(run_id=run_id, seq__in=[e["seq"] for e in events])
                 .values_list("seq", flat=True))
    new = [event for event in events if event["seq"] not in stored]
    if not new:
        return []
    changes = _run_changes(run_id, new, lease)
    changes["last_seq"] = max(stored_to, new[-1]["seq"])
    if not rows.update(**changes):
        raise LeaseLost(f"run {run_id}: another worker holds the lease; the batch is refused")
    return new


def _finished_already(run_id: Any, events: list[Event]) -> bool:
    """Whether this batch ends the run and was stored already: storing `run.finished` gave
    the lease up, so a batch sent again finds no row of its lease. The run.finished stored
    at its seq with its status tells (the events before it went in the same transaction)."""
    finished = next((event for event in events if event["type"] == ev.RUN_FINISHED), None)
    if finished is None:
        return False
    stored = RunEvent.objects.filter(run_id=run_id, seq=finished["seq"],
                                     type=ev.RUN_FINISHED).values_list("data", flat=True)
    return any(data.get("status") == finished["data"]["status"] for data in stored)


def _run_changes(run_id: Any, events: list[Event], lease: Any) -> dict[str, Any]:
    """What the events change on the run row."""
    changes: dict[str, Any] = {"last_seq": events[-1]["seq"]}
    waiting_changed = False
    # The open questions are read only when the batch changes them.
    asks = any(event["type"] in (ev.RUN_WAITING, ev.RUN_RESUMED) for event in events)
    waiting = list(Run.objects.only("waiting").get(pk=run_id).waiting) if asks else []
    # Counted as they end, so a running run shows them (run.finished then sets the total).
    recovered = sum(event["type"] == ev.NODE_FINISHED and event["scope"] is None
                    and event["data"]["status"] == "recovered" for event in events)
    if recovered:
        changes["recovered"] = F("recovered") + recovered
    for event in events:
        kind, data = event["type"], event["data"]
        if kind == ev.RUN_STARTED:
            changes.update(status=Run.Status.RUNNING, started_at=parse_ts(event["ts"]))
        elif kind == ev.RUN_WAITING:
            waiting.append(data)
            waiting_changed = True
        elif kind == ev.RUN_RESUMED:
            waiting = [q for q in waiting if q["node"] != data["node"]]
            waiting_changed = True
        elif kind == ev.RUN_FINISHED:
            changes.update(status=data["status"], outputs=data["outputs"], answer=data["answer"],
                           error=data["error"], elapsed_ms=data["elapsed_ms"],
                           recovered=data["recovered"], finished_at=parse_ts(event["ts"]))
            waiting, waiting_changed = [], True
            if lease is not None:
                changes.update(lease_owner="", lease_expires_at=None, unfinished_executions=0,
                               pending_answers=[])
    if waiting_changed:
        changes["waiting"] = waiting
    return changes


_NODE_ROWS = frozenset({ev.NODE_STARTED, ev.NODE_FINISHED, ev.NODE_SKIPPED, ev.RUN_WAITING})


def _project_node_runs(run_id: Any, events: list[Event], node_types: dict[str, str],
                       known_nodes: set[str] | None = None) -> list[NodeRun]:
    """Update the node runs these events change; the new ones are returned, to be inserted
    with those of the other batches."""
    if not events:
        return []
    states: dict[str, dict[str, Any]] = {}
    for event in events:
        kind, data = event["type"], event["data"]
        node = data.get("node")
        if kind == ev.NODE_STARTED:
            state = states.setdefault(node, {"position": event["seq"]})
            state.update(type=data["type"], status="running", attempts=data["attempt"],
                         inputs=data["inputs"])
            state.setdefault("started_at", parse_ts(event["ts"]))
        elif kind == ev.NODE_FINISHED:
            state = states.setdefault(node, {"position": event["seq"]})
            state.update(status=data["status"], outputs=data["outputs"], error=data["error"],
                         attempts=data["attempts"], elapsed_ms=data["elapsed_ms"],
                         finished_at=parse_ts(event["ts"]), logs=data.get("logs"))
            if data.get("reused"):  # taken over by a retry: no node.started came before
                state["reused"] = True
        elif kind == ev.NODE_SKIPPED:
            states.setdefault(node, {"position": event["seq"]}).update(status="skipped",
                                                                      attempts=0)
        elif kind == ev.RUN_WAITING:
            states.setdefault(node, {"position": event["seq"]})["status"] = "waiting"
    looked_up = [node for node in states if known_nodes is None or node in known_nodes]
    existing = {row.node: row for row in NodeRun.objects.filter(
        run_id=run_id, node__in=looked_up)} if looked_up else {}
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
    if updated:
        NodeRun.objects.bulk_update(updated, sorted(fields))
    return created
