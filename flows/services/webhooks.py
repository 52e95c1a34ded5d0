"""Webhooks: URLs that start runs of one flow for a sender that signs its requests
(docs/triggers.md, "Webhooks").

The signature scheme is Stripe's, which senders know: `Astron-Signature: t=<unix seconds>,
v1=<hex>`, the HMAC-SHA256 keyed with the hook's signing secret of `<t>.` and the raw body.
A timestamp more than 300 s from the server's clock is refused, so a captured request cannot
be replayed later; within that window `Astron-Delivery` makes a repeat start nothing new.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from flows import audit, encryption
from flows.errors import ServiceError
from flows.jsontext import InvalidJSON, strict_json_loads
from flows.models import Flow, Run, Webhook
from flows.queries import one_or_none, uuid_or_none
from flows.services.runs import request_fingerprint, start_run

SIGNATURE_HEADER = "Astron-Signature"
DELIVERY_HEADER = "Astron-Delivery"
TOLERANCE_S = 300
MAX_DELIVERY_ID = 150  # the run's Idempotency-Key is "hook:<id>:<delivery>", at most 200
SECRET_PREFIX = "whsec_"


def webhooks_of(flow: Flow) -> QuerySet[Webhook]:
    return Webhook.objects.filter(flow=flow).order_by("-created_at")


def webhook_of(flow: Flow, hook_id: Any) -> Webhook:
    hook = one_or_none(Webhook.objects.filter(flow=flow, pk=uuid_or_none(hook_id)))
    if hook is None:
        raise ServiceError(404, "not_found", "there is no such webhook")
    return hook


def create_webhook(flow: Flow, version: Any = None) -> tuple[Webhook, str]:
    """A new hook and its signing secret, which is stored encrypted and shown only now."""
    signing_secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        hook = Webhook.objects.create(flow=flow, version=version_text(version),
                                      signing_ciphertext=encryption.encrypt(signing_secret))
        audit.record(flow.owner_id, "webhook.created", "webhook", hook.pk, flow=flow,
                     details={"version": version_value(hook.version)})
    return hook, signing_secret


def delete_webhook(hook: Webhook) -> None:
    with transaction.atomic():
        hook_id, flow = hook.pk, hook.flow
        hook.delete()
        audit.record(flow.owner_id, "webhook.deleted", "webhook", hook_id, flow=flow)


def version_text(version: Any) -> str:
    """"published" (the default), "draft" or a version number, as stored."""
    if version is None or version in ("published", "draft"):
        return version or "published"
    if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
        return str(version)
    raise ServiceError(400, "invalid_value",
                       'version is "published", "draft" or a version number',
                       [{"path": "/version", "code": "invalid_value",
                         "message": 'must be "published", "draft" or an integer from 1'}])


def version_value(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def signature(signing_secret: str, timestamp: int | str, body: bytes) -> str:
    """The `v1` value of a request's signature: what a sender computes."""
    return hmac.new(signing_secret.encode(), f"{timestamp}.".encode() + body,
                    hashlib.sha256).hexdigest()


def deliver(hook_id: Any, body: bytes, signature_header: str | None,
            delivery: str | None, now: float | None = None) -> tuple[Run, bool]:
    """Start the hook's run for a signed request; (run, False) for a repeated delivery.

    404 for an unknown hook (or one whose flow was deleted), 401 `bad_signature` before the
    body is even parsed, then 400 for a body that is not JSON or inputs that do not fit."""
    hook = one_or_none(Webhook.objects.select_related("flow", "flow__owner")
                       .filter(pk=uuid_or_none(hook_id), flow__deleted_at__isnull=True))
    if hook is None:
        raise ServiceError(404, "not_found", "there is no such webhook")
    _verify(hook, body, signature_header, time.time() if now is None else now)
    if delivery is not None and not 0 < len(delivery) <= MAX_DELIVERY_ID:
        raise ServiceError(400, "invalid_idempotency_key",
                           f"{DELIVERY_HEADER} must have 1 to {MAX_DELIVERY_ID} characters")
    try:
        inputs = strict_json_loads(body.decode("utf-8"))
    except (UnicodeDecodeError, InvalidJSON, ValueError) as error:
        raise ServiceError(400, "invalid_json", "the body is not valid JSON") from error
    if not isinstance(inputs, dict):
        raise ServiceError(400, "invalid_inputs", "the body must be a JSON object: the run's inputs",
                           [{"path": "", "code": "invalid_inputs",
                             "message": "inputs must be an object"}])
    flow = hook.flow
    with transaction.atomic():
        run, created = start_run(
            flow.owner, flow, inputs, version=version_value(hook.version),
            idempotency_key=f"hook:{hook.pk}:{delivery}" if delivery else None,
            fingerprint=request_fingerprint({"hook": str(hook.pk),
                                             "body": body.decode("utf-8")}),
            trigger={"type": "webhook", "webhook": str(hook.pk), "delivery": delivery})
        Webhook.objects.filter(pk=hook.pk).update(last_delivery_at=timezone.now())
    return run, created


def _verify(hook: Webhook, body: bytes, header: str | None, now: float) -> None:
    refused = ServiceError(401, "bad_signature",
                           f"{SIGNATURE_HEADER} is missing, malformed, too old or wrong: sign "
                           "t=<unix seconds>,v1=<HMAC-SHA256 of '<t>.' + body> with the "
                           "webhook's signing secret")
    if not header:
        raise refused
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or \
            len(timestamp) > 12 or abs(now - int(timestamp)) > TOLERANCE_S or not candidates:
        raise refused
    expected = signature(encryption.decrypt(hook.signing_ciphertext), timestamp, body)
    # Every candidate is compared (a sender rotating secrets sends two), each in constant time.
    if not any(hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace"))
               for candidate in candidates):
        raise refused
