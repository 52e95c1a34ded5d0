"""The browser pages (session authentication). Thin: look up through `flows.services`, start
runs with `services.start_run`, hand the templates what they draw.

The run page gets the run's document (`run.document.dsl`: the snapshot it executes) and its
current state in the shape of `GET /api/runs/{id}/` plus `last_seq`, both as JSON
(`json_script`), so the first paint is right before the websocket connects; the page's
scripts (flows/static/flows/js/) then follow the run live.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from flows import services
from flows.api.serializers import RunDetailSerializer
from flows.errors import ServiceError
from flows.execution.world import llm_provider_names
from flows.models import AuditEntry, Flow, Run
from flows.pages.examples import curl_example, example_inputs
from flows.pages.forms import InputsForm, ScheduleForm, VersionForm, start_inputs, type_label
from flows.services import schedules as schedule_service
from flows.services import secrets as secret_service
from flows.services import webhooks as webhook_service

LOGIN_URL = "pages:login"
RUN_MODULES = tuple(f"flows/js/{name}.js" for name in ("run-page", "state", "graph", "render",
                                                        "socket"))
NODE_STATES = ("pending", "running", "waiting", "succeeded", "recovered", "failed", "skipped",
               "cancelled")
RECENT_RUNS = 20
HISTORY = 20  # audit entries shown on a flow's page
RUN_COLUMNS = ("id", "flow__slug", "flow__name", "status", "version_number", "created_at",
               "finished_at", "elapsed_ms", "waiting")


def signed_in(view: Callable) -> Callable:
    """Anonymous visitors go to the login page, and come back (`?next=`)."""
    return login_required(view, login_url=LOGIN_URL)


def found(lookup: Callable[..., Any], *args: Any) -> Any:
    """A service lookup whose 404 (missing, or someone else's) is the page's 404."""
    try:
        return lookup(*args)
    except ServiceError as error:
        if error.status == 404:
            raise Http404(error.message) from error
        raise


def run_url(run: Run) -> str:
    return reverse("pages:run", args=[run.pk])


@require_safe
@signed_in
def index(request):
    """The user's flows and latest runs."""
    flows = (Flow.objects.filter(owner=request.user, deleted_at__isnull=True)
             .order_by("-updated_at")[:200])
    runs = (Run.objects.filter(owner=request.user).select_related("flow")
            .only(*RUN_COLUMNS).order_by("-created_at")[:RECENT_RUNS])
    return render(request, "flows/index.html", {"flows": flows, "runs": runs})


@require_safe
@signed_in
def flow_page(request, slug: str):
    """A flow: its graph (the draft, or `?version=N`), its versions, recent runs and
    triggers (webhooks and schedules)."""
    return _flow_page(request, found(services.flow_of, request.user, slug))


def _flow_page(request, flow: Flow, schedule_form: ScheduleForm | None = None,
               status: int = 200):
    versions = list(flow.versions.select_related("document").order_by("-number"))
    shown = None
    wanted = request.GET.get("version")
    if wanted and wanted != "draft":
        shown = next((v for v in versions if str(v.number) == wanted), None)
        if shown is None:
            raise Http404(f'the flow "{flow.slug}" has no version {wanted}')
    runs = (Run.objects.filter(owner=request.user, flow=flow).select_related("flow")
            .only(*RUN_COLUMNS).order_by("-created_at")[:RECENT_RUNS])
    document = shown.document.dsl if shown else flow.draft
    return render(request, "flows/flow.html", {
        "flow": flow, "versions": versions, "shown": shown, "runs": runs, "document": document,
        "inputs": [(name, type_label(spec), spec)
                   for name, spec in start_inputs(document).items()],
        "webhooks": [(hook, request.build_absolute_uri(f"/hooks/{hook.pk}/"))
                     for hook in webhook_service.webhooks_of(flow)],
        "hook_example": curl_example(request.build_absolute_uri("/hooks/<id>/"), flow.draft),
        # Shown in each schedule's own timezone by the template.
        "schedules": [(schedule, schedule_service.next_times(schedule) if schedule.enabled
                       else []) for schedule in schedule_service.schedules_of(flow)],
        "history": AuditEntry.objects.filter(owner=request.user, flow=flow)
                   .order_by("-at", "-id")[:HISTORY],
        "schedule_form": schedule_form or ScheduleForm(
            initial={"inputs": json.dumps(example_inputs(flow.draft))}),
    }, status=status)


@require_POST
@signed_in
def schedule_add(request, slug: str):
    flow = found(services.flow_of, request.user, slug)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            schedule_service.create_schedule(flow, data["cron"], data["timezone"],
                                             data["inputs"], data["version"])
        except ServiceError as error:
            form.add_service_error(error)
        else:
            return HttpResponseRedirect(reverse("pages:flow", args=[flow.slug]) + "#schedules")
    return _flow_page(request, flow, schedule_form=form, status=400)


@require_POST
@signed_in
def schedule_enable(request, slug: str, schedule_id: str):
    """Enable or disable (`enabled` = "1" or "0")."""
    flow = found(services.flow_of, request.user, slug)
    schedule = found(schedule_service.schedule_of, flow, schedule_id)
    schedule_service.set_enabled(schedule, request.POST.get("enabled") == "1")
    return HttpResponseRedirect(reverse("pages:flow", args=[flow.slug]) + "#schedules")


@require_POST
@signed_in
def schedule_delete(request, slug: str, schedule_id: str):
    flow = found(services.flow_of, request.user, slug)
    schedule_service.delete_schedule(found(schedule_service.schedule_of, flow, schedule_id))
    return HttpResponseRedirect(reverse("pages:flow", args=[flow.slug]) + "#schedules")


@require_POST
@signed_in
def webhook_add(request, slug: str):
    """Create a webhook and show its signing secret, on this response only."""
    flow = found(services.flow_of, request.user, slug)
    version = request.POST.get("version", "published")
    try:
        hook, signing_secret = webhook_service.create_webhook(
            flow, int(version) if version.isdigit() else version)
    except ServiceError as error:
        return HttpResponseBadRequest(error.message)
    url = request.build_absolute_uri(f"/hooks/{hook.pk}/")
    response = render(request, "flows/webhook_created.html", {
        "flow": flow, "hook": hook, "url": url, "signing_secret": signing_secret,
        "example": curl_example(url, flow.draft, signing_secret)})
    add_never_cache_headers(response)
    return response


@require_POST
@signed_in
def webhook_delete(request, slug: str, hook_id: str):
    flow = found(services.flow_of, request.user, slug)
    webhook_service.delete_webhook(found(webhook_service.webhook_of, flow, hook_id))
    return HttpResponseRedirect(reverse("pages:flow", args=[flow.slug]) + "#webhooks")


@require_POST
@signed_in
def run_again(request, run_id, how: str):
    """"Re-run" and "Retry from the failed node" on the run page: the new run's page."""
    run = found(services.run_of, request.user, run_id)
    start = services.retry_run if how == "retry" else services.rerun_run
    try:
        again, _ = start(request.user, run)
    except ServiceError as error:
        return HttpResponseBadRequest(error.message)
    return HttpResponseRedirect(run_url(again))


@require_http_methods(["GET", "HEAD", "POST"])
@signed_in
def start_page(request, slug: str):
    """A form generated from the start node's inputs; a valid POST starts a run."""
    flow = found(services.flow_of, request.user, slug)
    posted = request.method == "POST"
    source = request.POST if posted else request.GET
    version_form = VersionForm(source if "version" in source else None,
                               published=flow.published_version)
    version = (version_form.cleaned_data["version"] if version_form.is_bound
               and version_form.is_valid() else version_form.fields["version"].initial)
    specs = start_inputs(services.document_of(flow, version))
    inputs_form = InputsForm(request.POST if posted else None, specs=specs)
    if posted and version_form.is_valid() and inputs_form.is_valid():
        try:
            run, _ = services.start_run(request.user, flow, inputs_form.inputs(), version=version,
                                        trigger={"type": "page"})
        except ServiceError as error:
            if error.code == "invalid_inputs":
                inputs_form.add_problems(error.details or [])
            else:
                version_form.add_error("version", error.message)
        else:
            return HttpResponseRedirect(run_url(run))
    fields = [(inputs_form[name], type_label(spec), bool(spec.get("required")))
              for name, spec in specs.items()]
    return render(request, "flows/start.html", {
        "flow": flow, "version": version, "version_form": version_form,
        "inputs_form": inputs_form, "fields": fields, "run_modules": RUN_MODULES})


@require_safe
@signed_in
def run_page(request, run_id):
    """The live run page: the graph coloured by state, the selected node, questions, cancel."""
    run = found(services.run_of, request.user, run_id)
    state = dict(RunDetailSerializer(run).data)
    state.update(last_seq=run.last_seq, cancel_requested=run.cancel_requested)
    retries = list(run.retries.filter(owner=request.user).order_by("created_at")
                   .values_list("pk", flat=True))
    return render(request, "flows/run.html", {
        "run": run, "flow": run.flow, "document": run.document.dsl, "state": state,
        "states": NODE_STATES, "retries": retries,
        "show_reused": run.retry_of_id is not None,
        "socket_path": f"/ws/runs/{run.pk}/",
        "answer_url": reverse("api-run-answer", args=[run.pk]),
        "cancel_url": reverse("api-run-cancel", args=[run.pk]),
    })


@require_safe
@signed_in
def editor_page(request, slug: str):
    """The visual editor on a flow's draft (docs/editor.md). It reads and writes through the
    JSON API like any client; this page only hands it the draft and the addresses."""
    flow = found(services.flow_of, request.user, slug)
    return _editor(request, flow.draft, {"slug": flow.slug,
                                         "published_version": flow.published_version})


@require_safe
@signed_in
def new_flow_page(request):
    """The visual editor on a new flow: a start and an end, saved with `POST /api/flows/`."""
    return _editor(request, starting_document(), None)


def starting_document() -> dict[str, Any]:
    return {"dsl": "astron/v1", "name": "Untitled flow",
            "nodes": [{"id": "start", "type": "start", "params": {"inputs": {}},
                       "ui": {"x": 0, "y": 0}},
                      {"id": "end", "type": "end", "inputs": {}, "ui": {"x": 360, "y": 0}}],
            "edges": [{"from": "start", "to": "end"}]}


def _editor(request, document: dict[str, Any], flow: dict[str, Any] | None):
    boot = {
        "flow": flow,
        "dsl": document,
        "secrets": list(secret_service.secrets_of(request.user).values_list("name", flat=True)),
        # Offered (not imposed) where a node names one: a subflow's flow, an llm's provider.
        "choices": {"flows": services.slugs_of(request.user, flow and flow["slug"]),
                    "providers": llm_provider_names()},
        "csrf": get_token(request),
        "urls": {"schema": reverse("api-dsl-schema"), "validate": reverse("api-flow-validate"),
                 "flows": reverse("api-flows"), "pages": reverse("pages:index"),
                 "runs": "/runs/"},
    }
    response = render(request, "flows/editor.html", {"boot": boot, "flow": flow})
    add_never_cache_headers(response)  # the draft must not come back from the cache after a save
    return response
