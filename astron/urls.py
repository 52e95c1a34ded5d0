from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from flows import views
from flows.admin.dashboard import dashboard
from flows.api.metrics import MetricsView
from flows.api.views import WebhookDelivery

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),  # staff only
    path("admin/dashboard/", dashboard, name="astron-dashboard"),  # before admin/
    path("admin/", admin.site.urls),
    path("api/", include("flows.api.urls")),
    # Webhook deliveries: signed instead of authenticated (docs/api.md, Webhooks).
    path("hooks/<str:hook_id>/", WebhookDelivery.as_view(), name="webhook-delivery"),
    path("", include("flows.pages.urls")),  # the browser pages: /, /flows/…, /runs/<id>/
]

if settings.SILK:  # staff only (tracing/silk.py)
    urlpatterns.insert(0, path("silk/", include("silk.urls", namespace="silk")))

# Django's own error pages keep the API's error shape under /api/.
handler400 = "flows.api.exceptions.bad_request"
handler404 = "flows.api.exceptions.page_not_found"
handler500 = "flows.api.exceptions.server_error"
