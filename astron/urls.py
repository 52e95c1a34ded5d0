from django.contrib import admin
from django.urls import include, path

from flows import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/", include("flows.api.urls")),
]

# Django's own error pages keep the API's error shape under /api/.
handler400 = "flows.api.exceptions.bad_request"
handler404 = "flows.api.exceptions.page_not_found"
handler500 = "flows.api.exceptions.server_error"
