"""Writing the audit log (docs/audit.md): who did what, in the transaction of the change.

The service functions call `record(...)` inside the transaction that makes the change, so a
change without its entry, or an entry without its change, cannot be committed. Who acted and
through what (`via`) come from the context the change is made in:

- a request: `AuditedRequests` (a middleware) names `via` by the path — `/api/` api,
  `/admin/` admin, `/hooks/` webhook, any other page — and the actor is the request's user
  as authenticated by then (DRF sets it on the Django request: token keys too);
- a management command, the schedule sweep: `acting("command")`, `acting("schedule")`;
- nothing said: `system`, no actor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flows.models import AuditEntry


@dataclass(frozen=True, slots=True)
class Acting:
    via: str
    request: Any = None
    user: Any = None

    def actor(self) -> Any:
        if self.user is not None:
            return self.user
        user = getattr(self.request, "user", None)
        return user if user is not None and user.is_authenticated else None


# Every action recorded (docs/api.md, Audit log).
ACTIONS = ("flow.created", "flow.updated", "flow.published", "flow.deleted", "run.answered",
           "run.cancelled", "token.created", "token.revoked", "secret.created",
           "secret.updated", "secret.deleted", "webhook.created", "webhook.deleted",
           "schedule.created", "schedule.updated", "schedule.deleted")

_acting: ContextVar[Acting | None] = ContextVar("astron_audit_acting", default=None)


@contextmanager
def acting(via: str, user: Any = None, request: Any = None) -> Iterator[None]:
    token = _acting.set(Acting(via, request, user))
    try:
        yield
    finally:
        _acting.reset(token)


def record(owner: Any, action: str, object_type: str, object_id: Any, *, flow: Any = None,
           run_id: Any = None, details: dict[str, Any] | None = None) -> AuditEntry:
    """Append an entry; call it inside the change's transaction."""
    assert action in ACTIONS, action
    context = _acting.get() or Acting("system")
    actor = context.actor()
    return AuditEntry.objects.create(
        owner_id=getattr(owner, "pk", owner), actor=actor,
        actor_name=actor.get_username() if actor is not None else "", via=context.via,
        action=action, object_type=object_type, object_id=str(object_id),
        flow_id=getattr(flow, "pk", flow), run_id=run_id, details=details or {})


def via_of(path: str) -> str:
    for prefix, via in (("/api/", "api"), ("/admin/", "admin"), ("/hooks/", "webhook")):
        if path.startswith(prefix):
            return via
    return "page"


class AuditedRequests:
    """Every request's changes are recorded as made through its door, by its user."""

    def __init__(self, get_response: Any):
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        with acting(via_of(request.path_info), request=request):
            return self.get_response(request)
