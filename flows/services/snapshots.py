"""Which document a run executes, and which of a run's questions are still open.

A run executes a snapshot: a published version's document, or the draft frozen when the run
started, named by its content hash (docs/platform.md, Storage). Every way of starting a run —
the API, the pages, the admin, a subflow's child run — resolves it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import Plan, document_digest
from flows.cache import plan_cache
from flows.errors import ServiceError
from flows.lookup import version_map
from flows.models import Document, Flow

MAX_VERSION = 2**31 - 1  # beyond the column's range: no such version (and no query error)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a new run executes: a document (by hash) and its plan, of a version or a draft."""

    digest: str
    plan: Plan
    version_id: int | None = None
    number: int | None = None
    unsaved: Any = None  # a draft's document not stored yet: stored with the run

    def store(self) -> None:
        """Store a draft's document, once the run that executes it is being written."""
        if self.unsaved is not None:
            Document.objects.get_or_create(
                hash=self.digest, defaults={"dsl": self.unsaved, "plan": self.plan.to_dict()})


def resolve(flow: Flow, version: Any = None) -> Snapshot:
    """The snapshot a new run of `version` executes: "published" (the default when the flow
    has one), "draft" (else the default), or a version number.

    Once a version and its plan are cached (flows/cache.py) this costs no query; neither the
    document nor the draft is read unless its plan is not stored."""
    if version is None:
        version = "published" if flow.published_version is not None else "draft"
    if version == "draft":
        return _draft(flow)
    if version == "published":
        if flow.published_version is None:
            raise ServiceError(409, "not_published",
                               f'the flow "{flow.slug}" has no published version')
        version = flow.published_version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ServiceError(400, "invalid_version",
                           'version must be "draft", "published" or a version number',
                           [{"path": "/version", "code": "invalid_value",
                             "message": f"{version!r} is not a version"}])
    found = version_map.resolve(flow, version) if version <= MAX_VERSION else None
    if found is None:
        raise ServiceError(404, "not_found", f'the flow "{flow.slug}" has no version {version}')
    version_id, digest = found
    return Snapshot(digest, plan_cache.get(digest), version_id, version)


def of_run(run: Any) -> Snapshot:
    """The snapshot a stored run executed (a version, or a draft by its hash): a re-run or a
    retry executes exactly it, whatever the flow's draft and versions are now."""
    return Snapshot(run.document_id, plan_cache.get(run.document_id), run.version_id,
                    run.version_number)


def document_of(flow: Flow, version: Any) -> Any:
    """The document a run of `version` would execute; the draft when there is no such
    version (a start form shows the draft's inputs then)."""
    try:
        snapshot = resolve(flow, version)
    except ServiceError:
        return flow.draft
    if snapshot.version_id is None:
        return snapshot.unsaved if snapshot.unsaved is not None else flow.draft
    return Document.objects.values_list("dsl", flat=True).get(hash=snapshot.digest)


def _draft(flow: Flow) -> Snapshot:
    """The draft's document by its hash: the stored one, or one stored with the run once the
    inputs passed (refused inputs write no row). The draft itself is read only then."""
    digest = flow.draft_hash
    if Document.objects.filter(hash=digest).exists():
        return Snapshot(digest, plan_cache.get(digest))
    dsl = flow.__dict__.get("draft")
    if dsl is None:  # not loaded (flow_of(..., for_run=True)): read it now, once
        dsl = Flow.objects.values_list("draft", flat=True).get(pk=flow.pk)
    digest = document_digest(dsl)  # the same hash, unless the row was edited by hand
    return Snapshot(digest, plan_cache.get(digest, dsl=dsl), unsaved=dsl)


def open_questions(waiting: list[dict[str, Any]],
                   pending_answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The questions of a run that no stored answer has taken yet."""
    answered = {answer["node"] for answer in pending_answers}
    return [question for question in waiting if question["node"] not in answered]
