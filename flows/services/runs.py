"""Starting runs, answering their questions, cancelling them."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from engine import InputsInvalid
from engine.questions import AnswerRefused, check_answer
from flows import audit
from flows.errors import ServiceError
from flows.models import Flow, Run
from flows.plans import plan_for
from flows.queries import one_or_none
from flows.services import capacity, dispatch, lifecycle, secrets, snapshots
from flows.services.history import parse_ts
from tracing.context import current_trace_parent

MAX_IDEMPOTENCY_KEY = 200


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def start_run(owner: Any, flow: Flow, inputs: Any, version: Any = None,
              idempotency_key: str | None = None, fingerprint: str = "",
              trigger: dict[str, Any] | None = None) -> tuple[Run, bool]:
    """Create a queued run and hand it to the executor; (run, False) for a repeated request.

    Inputs are checked against the start node before any row is written. The snapshot is
    resolved to a document hash and its plan comes from the plan cache (flows/cache.py): once
    a version and its plan are cached, a published version costs no query before the run's
    insert, and neither the document nor the draft is read unless its plan is not stored.
    """
    existing = _earlier_run(owner, idempotency_key, fingerprint)
    if existing is not None:
        return existing, False
    snapshot = snapshots.resolve(flow, version)
    try:
        applied = snapshot.plan.apply_inputs(inputs)
    except InputsInvalid as invalid:
        raise ServiceError(400, "invalid_inputs", "the inputs do not match the flow's start node",
                           [problem.to_dict() for problem in invalid.problems]) from invalid
    return _start(owner, flow, snapshot, applied, idempotency_key, fingerprint,
                  trigger or {"type": "api"})


def rerun_run(owner: Any, run: Run, idempotency_key: str | None = None,
              fingerprint: str = "") -> tuple[Run, bool]:
    """A new run of a finished run's snapshot (version or draft) with its inputs."""
    existing = _earlier_run(owner, idempotency_key, fingerprint)
    if existing is not None:
        return existing, False
    if not run.is_finished:
        raise ServiceError(409, "not_finished", f"the run is {run.status}: re-run it once it ends")
    return _start(owner, run.flow, snapshots.of_run(run), run.inputs, idempotency_key,
                  fingerprint, {"type": "rerun", "run": str(run.pk)})


def retry_run(owner: Any, run: Run, idempotency_key: str | None = None,
              fingerprint: str = "") -> tuple[Run, bool]:
    """A new run of a failed or cancelled run's snapshot and inputs that takes over every
    top-level node that ended succeeded, recovered or skipped (its executor builds that from
    the original's stored events) and executes the rest."""
    existing = _earlier_run(owner, idempotency_key, fingerprint)
    if existing is not None:
        return existing, False
    if run.status == Run.Status.SUCCEEDED:
        raise ServiceError(409, "succeeded", "the run succeeded: re-run it instead")
    if not run.is_finished:
        raise ServiceError(409, "not_finished", f"the run is {run.status}: retry it once it ends")
    return _start(owner, run.flow, snapshots.of_run(run), run.inputs, idempotency_key,
                  fingerprint, {"type": "retry", "run": str(run.pk)}, retry_of=run)


def _earlier_run(owner: Any, idempotency_key: str | None, fingerprint: str) -> Run | None:
    """The run a repeated request (same Idempotency-Key) started, or None for a new one."""
    if idempotency_key is None:
        return None
    if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY or "\x00" in idempotency_key:
        raise ServiceError(400, "invalid_idempotency_key",
                           f"Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY} characters")
    existing = one_or_none(Run.objects.filter(owner=owner, idempotency_key=idempotency_key))
    return _repeated(existing, fingerprint) if existing is not None else None


def _start(owner: Any, flow: Flow, snapshot: snapshots.Snapshot, applied: dict[str, Any],
           idempotency_key: str | None, fingerprint: str, trigger: dict[str, Any],
           retry_of: Run | None = None) -> tuple[Run, bool]:
    """Insert the run and hand it to its executor (a slot permitting), or refuse it."""
    # A flow that names no secret costs no query here.
    secrets.check_present(owner.pk, snapshot.plan.secret_names)
    worker = dispatch.executing_worker()

    def insert() -> Run:
        # Leased to this process's executor as it is inserted when a slot is free: the run
        # needs no claim (a read and a compare-and-swap) before it starts. Should this
        # process die first, the lease expires or its worker is seen gone, and another takes
        # the run up. Without a slot it stays queued (held) until one frees.
        leased = worker is not None and capacity.has_slot(
            owner.pk, flow.pk, flow.max_active_runs, timezone.now())
        lease = lifecycle.leased_to(worker) if leased else {}
        run = lifecycle.create(flow, snapshot, applied, owner=owner,
                               idempotency_key=idempotency_key, request_hash=fingerprint,
                               trace_parent=current_trace_parent(), trigger=trigger,
                               retry_of=retry_of, **lease)
        if leased:
            transaction.on_commit(lambda: dispatch.hand_over(run))
        elif worker is None:  # another process executes it: its claim checks the slot
            transaction.on_commit(lambda: dispatch.ring(run.pk))
        else:
            transaction.on_commit(lambda: capacity.note_held(owner.pk))
        return run

    try:
        with transaction.atomic():
            if worker is not None:
                capacity.lock_owner(owner.pk)
            run = insert()
    except IntegrityError:
        existing = one_or_none(Run.objects.filter(owner=owner, idempotency_key=idempotency_key))
        if existing is None:
            raise
        return _repeated(existing, fingerprint), False
    return run, True


def _repeated(run: Run, fingerprint: str) -> Run:
    if run.request_hash != fingerprint:
        raise ServiceError(409, "idempotency_conflict",
                           "this Idempotency-Key was used with a different request")
    return run


def answer_run(run: Run, answer: Any, option: Any = None, node: Any = None,
               by: str | None = None) -> Run:
    """Store an answer to an open question; the run continues wherever it executes.

    A question whose deadline has passed is closed even while no worker has applied its
    timeout yet (docs/dsl.md 5.10: the timeout wins): the answer is refused, and the run is woken
    to take its timeout edge now rather than at the next maintenance pass."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        open_nodes = [question["node"] for question in
                      snapshots.open_questions(locked.waiting, locked.pending_answers)]
        if locked.is_finished or not open_nodes:
            raise ServiceError(409, "not_waiting", "the run has no open question")
        if node is None:
            if len(open_nodes) > 1:
                raise ServiceError(400, "invalid_answer",
                                   f'several questions are open ({", ".join(open_nodes)}): '
                                   'say which with "node"')
            node = open_nodes[0]
        if node not in open_nodes:
            raise ServiceError(409, "not_waiting", f'no question "{node}" is open')
        deadline = next(q.get("timeout_at") for q in locked.waiting if q["node"] == node)
        if deadline is not None and parse_ts(deadline) <= timezone.now():
            refused = ServiceError(409, "not_waiting",
                                   f'the question "{node}" timed out at {deadline}')
            if locked.status == Run.Status.WAITING:
                Run.objects.filter(pk=run.pk).update(wake_at=timezone.now())
                transaction.on_commit(lambda: dispatch.ring(run.pk, "wake"))
        else:
            refused = None
            try:
                check_answer(plan_for(locked.document_id), node, answer, option)
            except AnswerRefused as error:
                raise ServiceError(400, error.code, error.message) from error
            locked.pending_answers = [*locked.pending_answers, {
                "node": node, "answer": answer, "option": option, "by": by}]
            locked.answer_serial = F("answer_serial") + 1
            fields = ["pending_answers", "answer_serial"]
            if locked.status == Run.Status.WAITING:
                locked.wake_at = timezone.now()
                fields.append("wake_at")
            locked.save(update_fields=fields)
            audit.record(locked.owner_id, "run.answered", "run", locked.pk, flow=locked.flow_id,
                         run_id=locked.pk,
                         details={"node": node, "option": option, "by": by})
            transaction.on_commit(lambda: dispatch.ring(run.pk, "answer"))
    if refused is not None:
        raise refused
    locked.refresh_from_db()
    return locked


def cancel_run(run: Run) -> Run:
    """Ask the run to stop; it ends `cancelled` with its running nodes interrupted."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.is_finished:
            raise ServiceError(409, "finished", f"the run already {locked.status}")
        locked.cancel_requested = True
        fields = ["cancel_requested"]
        if locked.status == Run.Status.WAITING:
            locked.wake_at = timezone.now()
            fields.append("wake_at")
        locked.save(update_fields=fields)
        audit.record(locked.owner_id, "run.cancelled", "run", locked.pk, flow=locked.flow_id,
                     run_id=locked.pk, details={"status": locked.status})
        transaction.on_commit(lambda: dispatch.ring(run.pk, "cancel"))
    return locked


def run_of(owner: Any, run_id: Any) -> Run:
    """The owner's run; someone else's or a malformed id answers like a missing one (404)."""
    try:
        key = uuid.UUID(str(run_id))
    except ValueError:
        key = None
    run = one_or_none(Run.objects.select_related("flow").filter(owner=owner, pk=key)) if key else None
    if run is None:
        raise ServiceError(404, "not_found", "there is no such run")
    return run


def wait_for_run(run_id: Any, timeout: float) -> None:
    """Block until the run finishes or waits for a person, or `timeout` seconds pass (on a
    thread: where the server's waiting layer is absent, flows/api/waiting.py)."""
    dispatch.wait(run_id, timeout)


async def until_settled(run_id: Any, timeout: float) -> str | None:
    """Wait until a run just started here finishes or waits for a person ("settled"), or
    moves on to another process ("moved"); None after `timeout` seconds (docs/api.md,
    "Waiting for a run"). No thread and no database connection is held meanwhile."""
    return await dispatch.until_settled(run_id, timeout)
