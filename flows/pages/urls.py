"""Routes of the browser pages, mounted at the site's root. The run page's address,
`/runs/<id>/`, is a contract: the admin links to it when it resolves."""

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from flows.pages import views

app_name = "pages"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="pages:index", permanent=False), name="home"),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's).
    path("favicon.ico", RedirectView.as_view(url=static("flows/favicon.svg")), name="favicon"),
    # Sign-in for everyone (the admin's login page takes staff only); back to `?next=`.
    path("login/", auth_views.LoginView.as_view(template_name="flows/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("flows/", views.index, name="index"),
    # Before the flow's own page, which it hides for a flow whose slug is "new" (docs/editor.md).
    path("flows/new/", views.new_flow_page, name="new-flow"),
    path("flows/<str:slug>/", views.flow_page, name="flow"),
    path("flows/<str:slug>/edit/", views.editor_page, name="edit"),
    path("flows/<str:slug>/run/", views.start_page, name="start"),
    path("flows/<str:slug>/webhooks/", views.webhook_add, name="webhook-add"),
    path("flows/<str:slug>/webhooks/<str:hook_id>/delete/", views.webhook_delete,
         name="webhook-delete"),
    path("flows/<str:slug>/schedules/", views.schedule_add, name="schedule-add"),
    path("flows/<str:slug>/schedules/<str:schedule_id>/enable/", views.schedule_enable,
         name="schedule-enable"),
    path("flows/<str:slug>/schedules/<str:schedule_id>/delete/", views.schedule_delete,
         name="schedule-delete"),
    path("runs/<uuid:run_id>/", views.run_page, name="run"),
    path("runs/<uuid:run_id>/rerun/", views.run_again, {"how": "rerun"}, name="rerun"),
    path("runs/<uuid:run_id>/retry/", views.run_again, {"how": "retry"}, name="retry"),
]
