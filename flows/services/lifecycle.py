"""A run's life, in one place: every change of a run row's status, lease or requests.

    create ──► queued ──claim──► running ──pause──► waiting ──claim──► running …
                                    │                                   │
                                    └─ release (finished) ◄─────────────┘
    terminate: a run no engine will continue ends with the engine's closing events.

Status, outputs and open questions follow from the run's events (services/history.py
projects each stored batch onto the row); this module owns what is not an event: the lease
(who executes the run, until when), the requests that reach a run through the database
(answers, a cancel, a deadline) and the rows of new runs, top-level and child alike. Leases
are claimed by compare-and-swap and renewed while the worker lives (healthchecks' "only if
nobody else took it", with an expiry); docs/platform.md, Execution, tells the whole story.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from engine import Plan, RunResult
from engine.checkpoint import Checkpoint
from flows.errors import LeaseLost, ServiceError
from flows.models import Flow, Run, Worker
from flows.queries import one_or_none
from flows.services import capacity
from flows.services.history import parse_ts, store_events, stored_events
from flows.services.secrets import check_present
from flows.services.snapshots import Snapshot, resolve


@dataclass(frozen=True, slots=True)
class Lease:
    """The right of one worker to execute a run and write its state, from one claim. Every
    write of the run names it; once another claim has moved the token on, it is refused."""

    run_id: Any
    worker: str
    token: int

    def rows(self) -> Any:
        """The run's row, only while this lease holds it."""
        return Run.objects.filter(pk=self.run_id, lease_owner=self.worker,
                                  lease_token=self.token)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_seconds() -> float:
    return float(getattr(settings, "RUN_LEASE_S", 30))


def lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=lease_seconds())


# A worker beats every WORKER_HEARTBEAT_S; one silent for WORKER_STALE_S is gone (it died, or
# is paused), and its runs are taken over without waiting out their leases.
WORKER_HEARTBEAT_S = 1.5
WORKER_STALE_S = 6.0
WORKER_FORGOTTEN_AFTER = timedelta(days=1)


def beat(worker: str, live_runs: int, **counts: int) -> None:
    """Say that `worker` is alive, executing `live_runs` runs; `counts`: its counters
    (doorbells_dropped, sweep_found) since it started."""
    now = timezone.now()
    fields = {"heartbeat_at": now, "live_runs": live_runs, **counts}
    if not Worker.objects.filter(name=worker).update(**fields):
        Worker.objects.bulk_create([Worker(name=worker, **fields)], ignore_conflicts=True)


def gone_workers() -> list[str]:
    """Workers whose heartbeat stopped: their runs may be claimed though their leases hold."""
    silent = timezone.now() - timedelta(seconds=WORKER_STALE_S)
    return list(Worker.objects.filter(heartbeat_at__lt=silent).values_list("name", flat=True))


def forget_workers(names: list[str]) -> None:
    """Drop the rows of gone workers that hold no run any more, and of workers silent for a
    day whatever they held (their leases ran out long ago)."""
    held = set(Run.objects.filter(status__in=Run.ACTIVE, lease_owner__in=names)
               .values_list("lease_owner", flat=True))
    Worker.objects.filter(name__in=[name for name in names if name not in held]).delete()
    Worker.objects.filter(heartbeat_at__lt=timezone.now() - WORKER_FORGOTTEN_AFTER).delete()


def is_gone(worker: str) -> bool:
    silent = timezone.now() - timedelta(seconds=WORKER_STALE_S)
    return Worker.objects.filter(name=worker, heartbeat_at__lt=silent).exists()


def hand_off(worker: str) -> int:
    """A worker stopping on purpose frees the leases of the runs it interrupted, so that
    another worker takes them at once; an interruption is not a death (RUN_MAX_RECOVERIES).
    The number of runs handed off."""
    return Run.objects.filter(status=Run.Status.RUNNING, lease_owner=worker).update(
        lease_owner="", lease_expires_at=None,
        unfinished_executions=Greatest(F("unfinished_executions") - 1, 0))


def leave(worker: str) -> None:
    """A worker stopping on purpose: its runs (interrupted) are taken over at once."""
    Worker.objects.filter(name=worker).update(
        heartbeat_at=timezone.now() - timedelta(seconds=WORKER_STALE_S + 1), live_runs=0)


# -- birth ------------------------------------------------------------------------------------

def create(flow: Flow, snapshot: Snapshot, inputs: dict[str, Any], **fields: Any) -> Run:
    """The row of a new run of `snapshot` (its draft document stored with it), `queued`
    unless `fields` say otherwise (a child run starts leased to its parent's worker).
    `fields` name its owner (`owner` or `owner_id`)."""
    snapshot.store()
    return Run.objects.create(
        flow=flow, version_id=snapshot.version_id,
        version_number=snapshot.number, document_id=snapshot.digest, inputs=inputs, **fields)


def leased_to(worker: str) -> dict[str, Any]:
    """The fields of a new run's row that make it claimed by `worker` as it is inserted: its
    first execution counted, as a claim counts it."""
    return {"lease_owner": worker, "lease_expires_at": lease_until(), "lease_token": 1,
            "unfinished_executions": 1}


def start_child(owner_id: Any, parent_run_id: Any, node: str, depth: int, slug: str,
                version: Any, inputs: Any, worker: str) -> tuple[Run, Plan]:
    """A subflow's child run of the owner's flow `slug`, already running under `worker`.

    Raises ServiceError `not_published` (no such flow or version: the subflow node's error,
    docs/dsl.md §5.11), `missing_secret` and InputsInvalid."""
    flow = one_or_none(Flow.objects.filter(owner_id=owner_id, slug=slug, deleted_at__isnull=True))
    if flow is None:
        raise ServiceError(404, "not_published", f'there is no flow "{slug}"')
    try:
        snapshot = resolve(flow, version)
    except ServiceError as missing:
        number = "" if version == "published" else f" {version}"
        raise ServiceError(404, "not_published",
                           f'the flow "{slug}" has no published version{number}') from missing
    applied = snapshot.plan.apply_inputs(inputs)
    check_present(owner_id, snapshot.plan.secret_names)
    row = create(flow, snapshot, applied, owner_id=owner_id, status=Run.Status.RUNNING,
                 parent_run_id=parent_run_id, parent_node=node, depth=depth,
                 trigger={"type": "subflow", "run": str(parent_run_id)}, **leased_to(worker))
    return row, snapshot.plan


# -- execution --------------------------------------------------------------------------------

def claim(run_id: Any, worker: str, retake: bool = False) -> Run | None:
    """Take a run that needs executing, unless another worker that is alive holds a live
    lease on it. `retake`: the run may be leased to `worker` itself, which stopped executing
    it when it lost touch with the database and now takes it up again."""
    run = one_or_none(Run.objects.filter(pk=run_id))
    now = timezone.now()
    if run is None or run.is_finished:
        return None
    leased = run.lease_owner and run.lease_expires_at and run.lease_expires_at > now
    if leased and not (retake and run.lease_owner == worker) and not is_gone(run.lease_owner):
        return None
    if run.status == Run.Status.WAITING and not (
            run.pending_answers or run.cancel_requested
            or (run.wake_at is not None and run.wake_at <= now)):
        return None
    # A waiting run taken up executes again: it is `running` until it finishes or waits
    # anew, so that if this worker dies, the run's expired lease gets it taken over.
    status = Run.Status.RUNNING if run.status == Run.Status.WAITING else run.status
    # A run that holds no slot yet (queued and never executed, or waiting) takes one.
    needs_slot = run.status == Run.Status.WAITING or (
        run.status == Run.Status.QUEUED and not run.lease_owner)
    with transaction.atomic():
        if needs_slot:
            capacity.lock_owner(run.owner_id)
            if not capacity.has_slot(run.owner_id, run.flow_id, capacity.flow_limit(run.flow_id),
                                     run.created_at, itself=run.pk):
                transaction.on_commit(lambda: capacity.note_held(run.owner_id))
                return None
        taken = Run.objects.filter(
            pk=run.pk, status=run.status, lease_owner=run.lease_owner,
            lease_expires_at=run.lease_expires_at, lease_token=run.lease_token,
        ).update(lease_owner=worker, lease_expires_at=now + timedelta(seconds=lease_seconds()),
                 lease_token=F("lease_token") + 1, wake_at=None, status=status,
                 unfinished_executions=F("unfinished_executions") + 1,
                 resumed_after_crash=run.resumed_after_crash + (run.status == Run.Status.RUNNING))
    if not taken:
        return None
    # Answers stay on the row until the run pauses or finishes having applied them: if this
    # worker dies first, the next one applies them (those already applied are no longer open).
    return Run.objects.select_related("document", "flow").get(pk=run.pk)


def claim_stale(worker: str, limit: int, gone: list[str] | tuple[str, ...] = ()) -> list[Run]:
    """Take over, in one statement, up to `limit` running runs that hold a slot and need a
    worker: their lease expired, their worker is `gone`, or a stopping worker handed them
    over. PostgreSQL only (the sweep's batch claim; an empty list elsewhere): the candidates
    are locked with SKIP LOCKED, so sweeps running at once in several workers split them
    instead of racing for the same ones, and each row's conditions are checked again under
    its lock. Runs leased to `worker` itself are left to it (it may still execute them).
    The rows come back as `claim` returns them."""
    if connection.vendor != "postgresql" or limit <= 0:
        return []
    table = Run._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} SET lease_owner = %s, lease_expires_at = %s,
                    lease_token = lease_token + 1,
                    unfinished_executions = unfinished_executions + 1,
                    resumed_after_crash = resumed_after_crash
                        + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
                    wake_at = NULL
                WHERE id IN (
                    SELECT id FROM {table}
                    WHERE (status = 'running' OR (status = 'queued' AND lease_owner <> ''))
                      AND lease_owner <> %s
                      AND (lease_expires_at < %s OR lease_owner = ANY(%s)
                           OR (status = 'running' AND lease_owner = ''))
                    ORDER BY created_at LIMIT %s
                    FOR UPDATE SKIP LOCKED)
                RETURNING id""",
            [worker, now + timedelta(seconds=lease_seconds()), worker, now, list(gone), limit])
        taken = [row[0] for row in cursor.fetchall()]
    return list(Run.objects.select_related("document", "flow").filter(pk__in=taken)
                .order_by("created_at"))


def renew(lease: Lease) -> Run | None:
    """Extend our lease; None when it was lost (someone took the run over). The row comes
    with the requests that may have arrived: answers and a cancel."""
    if not lease.rows().update(lease_expires_at=lease_until()):
        return None
    return Run.objects.only("pending_answers", "answer_serial", "cancel_requested").get(
        pk=lease.run_id)


def renew_many(leases: list[Lease]) -> dict[str, Run | None]:
    """Renew several leases of one worker at once (its runs' renewals that fall in the same
    moment: flows/execution/renewals.py), by run id: the row with its requests (answers,
    cancel) as `renew` gives it, or None where the lease was lost. One statement on
    PostgreSQL; one per lease elsewhere."""
    if connection.vendor != "postgresql":
        return {str(lease.run_id): renew(lease) for lease in leases}
    found: dict[str, Run | None] = {str(lease.run_id): None for lease in leases}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {Run._meta.db_table} AS run SET lease_expires_at = %s
                FROM unnest(%s::uuid[], %s::bigint[]) AS held(id, token)
                WHERE run.id = held.id AND run.lease_token = held.token
                  AND run.lease_owner = %s
                RETURNING run.id, run.pending_answers, run.answer_serial,
                          run.cancel_requested""",
            [lease_until(), [lease.run_id for lease in leases],
             [lease.token for lease in leases], leases[0].worker])
        for run_id, answers, serial, cancel in cursor.fetchall():
            if isinstance(answers, str):  # Django reads jsonb as text; its field decodes it
                answers = json.loads(answers)
            found[str(run_id)] = Run(pk=run_id, pending_answers=answers, answer_serial=serial,
                                     cancel_requested=cancel)
    return found


def take_answers(lease: Lease, serial: int) -> bool:
    """Remove the answers we read from the row, unless another arrived since (its serial)."""
    return bool(lease.rows().filter(answer_serial=serial).update(pending_answers=[]))


def pause(lease: Lease, result: RunResult, serial: int) -> bool:
    """Record that a run waits for answers, with the executing time and recovered nodes so
    far (a waiting run shows them), and give up its lease; True when an answer or a cancel
    came meanwhile, so the run should be claimed again at once."""
    deadlines = [q["timeout_at"] for q in result.waiting if q.get("timeout_at")]
    wake_at = min(parse_ts(deadline) for deadline in deadlines) if deadlines else None
    # The answers this execution started with are applied now (stored as run.resumed).
    lease.rows().filter(answer_serial=serial).update(pending_answers=[])
    if not release(lease, status=Run.Status.WAITING, waiting=result.waiting, wake_at=wake_at,
                   elapsed_ms=result.elapsed_ms, recovered=result.recovered):
        raise LeaseLost(f"run {lease.run_id}: the lease was lost before the run paused")
    row = Run.objects.only("answer_serial", "cancel_requested").get(pk=lease.run_id)
    if row.answer_serial != serial or row.cancel_requested:
        Run.objects.filter(pk=lease.run_id).update(wake_at=timezone.now())
        return True
    return False


def release(lease: Lease, **changes: Any) -> bool:
    """Give up our lease (the run finished, paused or is left to another worker); False
    when it was no longer ours."""
    return bool(lease.rows().update(lease_owner="", lease_expires_at=None,
                                    unfinished_executions=0, **changes))


def terminate(run_id: Any, status: str, message: str, code: str = "cancelled") -> None:
    """End a run that no engine will continue (a child its parent gave up, a run that kills
    its workers) with the closing events the engine makes for it, and free its lease."""
    checkpoint = Checkpoint.from_events(stored_events(run_id))
    ts = timezone.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with transaction.atomic():  # whoever sees it finished sees it let go
        store_events(run_id, checkpoint.closing_events(str(run_id), status, message, ts, code))
        Run.objects.filter(pk=run_id).update(lease_owner="", lease_expires_at=None,
                                             unfinished_executions=0)


def max_recoveries() -> int:
    return int(getattr(settings, "RUN_MAX_RECOVERIES", 3))


def kills_its_workers(row: Run) -> bool:
    """Whether a run just claimed is one whose last RUN_MAX_RECOVERIES executions all died
    with their worker (the claim counted this one too)."""
    return row.unfinished_executions > max_recoveries()


def give_up(row: Run) -> None:
    """Fail a run that killed its worker RUN_MAX_RECOVERIES times in a row (worker_lost)."""
    died = row.unfinished_executions - 1
    terminate(row.pk, "failed", f"the run's worker died while executing it {died} times in a "
              "row; it is not taken up again", code="worker_lost")


# -- finding work -----------------------------------------------------------------------------

QUEUED_GRACE_S = 5.0

def runs_needing_a_worker(limit: int = 100, gone: list[str] | tuple[str, ...] = ()
                          ) -> list[Any]:
    """Runs whose lease expired or whose worker is `gone` (it died), that were never picked
    up, or that wait and have an answer, a cancel or a passed deadline."""
    now = timezone.now()
    # A queued run never claimed: its doorbell was lost (a crash between commit and publish,
    # a broker that refused it), or the process that inserted it died before taking it.
    grace = now - timedelta(seconds=min(lease_seconds(), QUEUED_GRACE_S))
    stale = Q(status__in=Run.ACTIVE) & (
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, created_at__lt=grace))
    handed_off = Q(status=Run.Status.RUNNING, lease_owner="")  # by a worker that stopped
    if gone:
        stale |= Q(status__in=Run.ACTIVE, lease_owner__in=list(gone))
    due = Q(status=Run.Status.WAITING, wake_at__lte=now)
    return list(Run.objects.filter(stale | handed_off | due).order_by("created_at")
                .values_list("pk", flat=True)[:limit])


def is_settled(run_id: Any) -> bool:
    """Finished, or waiting for a person with nothing (answer, cancel, deadline) to act on."""
    row = one_or_none(Run.objects.filter(pk=run_id).values("status", "lease_owner", "wake_at"))
    if row is None or row["status"] in Run.FINISHED:
        return True
    return row["status"] == Run.Status.WAITING and not row["lease_owner"] and (
        row["wake_at"] is None or row["wake_at"] > timezone.now())

