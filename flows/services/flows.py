"""Creating, editing, publishing and deleting flows."""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from engine import DocumentInvalid, document_digest
from flows import audit, lookup
from flows.errors import ServiceError
from flows.models import Document, Flow, FlowVersion
from flows.queries import one_or_none
from flows.services.documents import (
    SLUG_PATTERN,
    check_dsl,
    check_slug,
    slug_from_name,
    store_document,
)

# Tries at a slug made from the name: a concurrent create of the same name takes the slug
# chosen here before this one stores its flow, and the next choice sees it taken. Each try
# loses only to a flow stored meanwhile, so this is far more than concurrent creates need.
SLUG_TRIES = 20


def create_flow(owner: Any, dsl: Any, slug: str | None = None) -> Flow:
    """A new flow whose draft is `dsl`; `name` and `description` come from the document.

    Without a slug it is made from the name, with the next numeric suffix when a concurrent
    create took the one chosen (docs/api.md); a slug given and taken answers 409 `slug_taken`."""
    if slug is not None:
        check_slug(slug)
    check_dsl(owner, dsl, slug)
    for _ in range(1 if slug is not None else SLUG_TRIES):
        chosen = slug if slug is not None else slug_from_name(owner, dsl["name"])
        try:
            with transaction.atomic():
                flow = Flow.objects.create(
                    owner=owner, slug=chosen, name=dsl["name"],
                    description=dsl.get("description", ""), draft=dsl,
                    draft_hash=document_digest(dsl))
                audit.record(owner, "flow.created", "flow", chosen, flow=flow,
                             details={"dsl_hash": flow.draft_hash})
                return flow
        except IntegrityError:
            pass  # the (owner, slug) pair was stored meanwhile: choose again
    raise ServiceError(409, "slug_taken", f'the slug "{chosen}" is taken')


KEEP = object()  # update_flow: this part stays as it is


def update_flow(flow: Flow, dsl: Any = KEEP, max_active_runs: Any = KEEP) -> Flow:
    """Replace the draft, or the flow's limit of runs executing at once (None: no limit of
    its own), or both; nothing is written unless all of it is valid. Runs already started
    keep the snapshot they started with."""
    fields = ["updated_at"]
    details: dict[str, Any] = {}
    if dsl is not KEEP:
        check_dsl(flow.owner, dsl, flow.slug)
        before, previous = flow.draft_hash, flow.draft
        flow.draft = dsl
        flow.draft_hash = document_digest(dsl)
        flow.name = dsl["name"]
        flow.description = dsl.get("description", "")
        fields += ["draft", "draft_hash", "name", "description"]
        details["dsl_hash"] = {"before": before, "after": flow.draft_hash}
    if max_active_runs is not KEEP:
        details["max_active_runs"] = {"before": flow.max_active_runs, "after": max_active_runs}
        flow.max_active_runs = max_active_runs
        fields.append("max_active_runs")
    with transaction.atomic():
        if "dsl_hash" in details:
            # Both documents, stored by hash, so the admin can show what changed.
            if not Document.objects.filter(hash=before).exists():
                with contextlib.suppress(DocumentInvalid):
                    # A draft saved under older rules: the diff shows "not stored" then.
                    store_document(previous)
            store_document(dsl)
        flow.save(update_fields=fields)
        audit.record(flow.owner_id, "flow.updated", "flow", flow.slug, flow=flow,
                     details=details)
    return flow


def delete_flow(flow: Flow) -> None:
    """Hide a flow from lists; its runs stay readable and its slug stays taken."""
    flow.deleted_at = timezone.now()
    with transaction.atomic():
        flow.save(update_fields=["deleted_at", "updated_at"])
        audit.record(flow.owner_id, "flow.deleted", "flow", flow.slug, flow=flow)


def publish_flow(flow: Flow) -> tuple[FlowVersion, bool]:
    """Freeze the draft as the next version; an unchanged draft gives the latest one back."""
    with transaction.atomic():
        locked = Flow.objects.select_for_update().get(pk=flow.pk)
        latest = locked.versions.order_by("-number").first()
        if latest is not None and latest.document_id == locked.draft_hash:
            return latest, False
        check_dsl(locked.owner, locked.draft, locked.slug)
        document = store_document(locked.draft)
        version = FlowVersion.objects.create(
            flow=locked, number=(latest.number + 1) if latest else 1, document=document)
        locked.published_version = version.number
        locked.save(update_fields=["published_version", "updated_at"])
        audit.record(locked.owner_id, "flow.published", "flow", locked.slug, flow=locked,
                     details={"version": version.number, "dsl_hash": document.hash})
    flow.published_version = version.number
    return version, True


# The columns that starting a run reads (services.start_run): not the draft, which may be large.
RUN_COLUMNS = ("id", "owner", "slug", "draft_hash", "published_version", "created_at",
               "deleted_at", "max_active_runs")


def slugs_of(owner: Any, leaving_out: str | None = None) -> list[str]:
    """The slugs of the owner's flows a subflow of `leaving_out` may name: not deleted, and
    not that flow itself (a `self_reference`)."""
    flows = Flow.objects.filter(owner=owner, deleted_at__isnull=True).exclude(slug=leaving_out)
    return list(flows.order_by("slug").values_list("slug", flat=True))


def flow_of(owner: Any, slug: str, include_deleted: bool = False,
            for_run: bool = False) -> Flow:
    """The owner's flow by slug; someone else's answers like a missing one (404).

    A pair found missing (or deleted) a moment ago is answered without a query
    (flows/lookup.py). `for_run` loads only RUN_COLUMNS.
    """
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        # No flow has such a slug; and PostgreSQL refuses some strings (NUL) in a query.
        raise ServiceError(404, "not_found", "there is no such flow")
    owner_id = owner.pk
    if lookup.known_missing(owner_id, slug, include_deleted):
        raise ServiceError(404, "not_found", f'there is no flow "{slug}"')
    flows = Flow.objects.filter(owner=owner, slug=slug)
    if for_run:
        flows = flows.only(*RUN_COLUMNS)
    flow = one_or_none(flows)
    if flow is None:
        lookup.note_missing(owner_id, slug)
    elif flow.deleted_at is not None and not include_deleted:
        lookup.note_missing(owner_id, slug, deleted=True)  # its slug stays taken for good
        flow = None
    if flow is None:
        raise ServiceError(404, "not_found", f'there is no flow "{slug}"')
    return flow
