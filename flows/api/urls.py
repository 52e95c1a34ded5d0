"""Routes of the API (docs/api.md), mounted at /api/."""

from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from flows.api import exceptions, views
from flows.api.stream import run_stream

urlpatterns = [
    path("flows/", views.FlowList.as_view(), name="api-flows"),
    path("flows/validate/", views.FlowValidate.as_view(), name="api-flow-validate"),
    path("flows/<str:slug>/", views.FlowDetail.as_view(), name="api-flow"),
    path("flows/<str:slug>/publish/", views.FlowPublish.as_view(), name="api-flow-publish"),
    path("flows/<str:slug>/versions/", views.FlowVersions.as_view(), name="api-flow-versions"),
    path("flows/<str:slug>/versions/<int:number>/", views.FlowVersionDetail.as_view(),
         name="api-flow-version"),
    path("flows/<str:slug>/export/", views.FlowExport.as_view(), name="api-flow-export"),
    path("flows/<str:slug>/runs/", views.FlowRuns.as_view(), name="api-flow-runs"),
    path("flows/<str:slug>/webhooks/", views.FlowWebhooks.as_view(), name="api-flow-webhooks"),
    path("flows/<str:slug>/webhooks/<str:hook_id>/", views.FlowWebhook.as_view(),
         name="api-flow-webhook"),
    path("flows/<str:slug>/schedules/", views.FlowSchedules.as_view(),
         name="api-flow-schedules"),
    path("flows/<str:slug>/schedules/<str:schedule_id>/", views.FlowSchedule.as_view(),
         name="api-flow-schedule"),
    path("runs/", views.RunList.as_view(), name="api-runs"),
    path("runs/<str:run_id>/", views.RunDetail.as_view(), name="api-run"),
    path("runs/<str:run_id>/events/", views.RunEvents.as_view(), name="api-run-events"),
    path("runs/<str:run_id>/stream/", run_stream, name="api-run-stream"),
    path("runs/<str:run_id>/answer/", views.RunAnswer.as_view(), name="api-run-answer"),
    path("runs/<str:run_id>/cancel/", views.RunCancel.as_view(), name="api-run-cancel"),
    path("runs/<str:run_id>/rerun/", views.RunRerun.as_view(), name="api-run-rerun"),
    path("runs/<str:run_id>/retry/", views.RunRetry.as_view(), name="api-run-retry"),
    path("audit/", views.AuditList.as_view(), name="api-audit"),
    path("secrets/", views.SecretList.as_view(), name="api-secrets"),
    path("secrets/<str:name>/", views.SecretDetail.as_view(), name="api-secret"),
    path("dsl/schema/", views.DslSchema.as_view(), name="api-dsl-schema"),
    path("schema/", views.OpenApiSchema.as_view(), name="api-schema"),
    path("docs/", views.DocsPage.as_view(url_name="api-schema"), name="api-docs"),
    # Anything else under /api/ (ending in a slash, so that CommonMiddleware still adds a
    # missing one) is a 404 in the error shape, whatever the method and whether DEBUG is on.
    re_path(r"^.*/$", csrf_exempt(exceptions.page_not_found), name="api-nothing"),
]
