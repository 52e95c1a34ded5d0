"""Flow documents: validation with the platform's knowledge (slugs, other flows), storage."""

from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Any

from engine import document_digest, validate_document
from engine.errors import Problem
from flows.cache import plan_cache
from flows.errors import ServiceError
from flows.models import Document, Flow

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RESERVED_SLUGS = frozenset({"validate"})


def problems_of(owner: Any, dsl: Any, slug: str | None = None) -> list[Problem]:
    """Every problem of a document, including subflows that lead back to the flow itself."""
    return validate_document(dsl, slug=slug,
                             reachable_flows=lambda target: reachable_flows(owner, target))


def check_dsl(owner: Any, dsl: Any, slug: str | None = None) -> None:
    problems = problems_of(owner, dsl, slug)
    if problems:
        raise ServiceError(400, "invalid_dsl",
                           f"the flow document has {len(problems)} problem"
                           f"{'s' if len(problems) != 1 else ''}",
                           [problem.to_dict() for problem in problems])


def store_document(dsl: dict[str, Any]) -> Document:
    """The stored copy of a valid document (one row per distinct content), with its plan.

    The plan goes through the plan cache, so that publishing warms it (L1 here, L2 for every
    process): the first run of a new version finds its plan compiled.
    """
    digest = document_digest(dsl)
    plan = plan_cache.get(digest, dsl=dsl)
    document, _ = Document.objects.get_or_create(
        hash=digest, defaults={"dsl": dsl, "plan": plan.to_dict()})
    return document


def subflow_targets(dsl: Any) -> set[str]:
    """Slugs named by the subflow nodes of a document, iteration bodies included."""
    found: set[str] = set()
    stack = [dsl.get("nodes")] if isinstance(dsl, dict) else []
    while stack:
        nodes = stack.pop()
        for node in nodes if isinstance(nodes, list) else []:
            params = node.get("params") if isinstance(node, dict) else None
            if not isinstance(params, dict):
                continue
            if node.get("type") == "subflow" and isinstance(params.get("flow"), str):
                found.add(params["flow"])
            body = params.get("body")
            if isinstance(body, dict):
                stack.append(body.get("nodes"))
    return found


def reachable_flows(owner: Any, start: str) -> set[str]:
    """Every slug the owner's flow `start` reaches through subflows (drafts and versions)."""
    seen: set[str] = set()
    frontier = {start}
    while frontier:
        seen |= frontier
        documents = []
        for flow in Flow.objects.filter(owner=owner, slug__in=frontier).prefetch_related(
                "versions__document"):
            documents.append(flow.draft)
            documents.extend(version.document.dsl for version in flow.versions.all())
        targets: set[str] = set()
        for dsl in documents:
            targets |= subflow_targets(dsl)
        frontier = targets - seen
    return seen


def slug_from_name(owner: Any, name: str) -> str:
    """A free slug made from a name: ASCII-folded, dashes, a numeric suffix when taken."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:55].strip("-")
    if not base or base in RESERVED_SLUGS:
        base = f"flow-{secrets.token_hex(3)}"
    taken = set(Flow.objects.filter(owner=owner, slug__startswith=base)
                .values_list("slug", flat=True))
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def check_slug(slug: Any) -> str:
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug) or slug in RESERVED_SLUGS:
        raise ServiceError(400, "invalid_slug",
                           "a slug is 1–63 lower-case letters, digits and dashes, starting "
                           'with a letter or digit; "validate" is reserved',
                           [{"path": "/slug", "code": "invalid_value",
                             "message": f"{str(slug)[:100]!r} is not a valid slug"}])
    return slug
