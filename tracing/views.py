"""/metrics (Prometheus text, staff only) and the admin dashboard (/admin/dashboard/)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from flows import services
from tracing import dashboard as figures
from tracing import metrics

KEYWORDS = ("token", "bearer")


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics of this process for a staff user's session or key (`Authorization: Token
    <key>` or `Bearer <key>`, as Prometheus sends a `bearer_token`); 401 without
    credentials or with a bad key, 403 for anyone not staff."""
    header = request.headers.get("Authorization", "")
    if header:
        words = header.split()
        found = services.user_for_key(words[1]) if (
            len(words) == 2 and words[0].lower() in KEYWORDS) else None
        if found is None:
            return _refusal(401, "not_authenticated", "the key is unknown, expired or revoked")
        user = found[0]
    elif request.user.is_authenticated:
        user = request.user
    else:
        return _refusal(401, "not_authenticated", "credentials were not provided")
    if not user.is_staff:
        return _refusal(403, "permission_denied", "the metrics are for staff users only")
    return HttpResponse(metrics.metrics_text(), content_type=metrics.CONTENT_TYPE)


def _refusal(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message, "details": []}},
                            status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Token realm="metrics"'
    return response


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The last hour's figures (tracing/dashboard.py), in the admin's frame."""
    context = {**admin.site.each_context(request), "title": "Dashboard: the last hour",
               **figures.figures()}
    return TemplateResponse(request, "tracing/dashboard.html", context)


# Staff only, like the rest of the admin (anyone else is sent to its login page).
dashboard = admin.site.admin_view(dashboard_view)
