"""The browser pages (session authentication). Thin: look up through `flows.services`, start
runs with `services.start_run`, hand the templates what they draw.

The run page gets the run's document (`run.document.dsl`: the snapshot it executes) and its
current state in the shape of `GET /api/runs/{id}/` plus `last_seq`, both as JSON
(`json_script`), so the first paint is right before the websocket connects; the page's
scripts (flows/static/flows/js/) then follow the run live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from flows import services
from flows.api.serializers import RunDetailSerializer
from flows.errors import ServiceError
from flows.models import Flow, Run
from flows.pages.forms import InputsForm, VersionForm, start_inputs, type_label

LOGIN_URL = "pages:login"
RUN_MODULES = tuple(f"flows/js/{name}.js" for name in ("run-page", "state", "graph", "render",
                                                        "socket"))
NODE_STATES = ("pending", "running", "waiting", "succeeded", "recovered", "failed", "skipped",
               "cancelled")
RECENT_RUNS = 20
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
    """A flow: its graph (the draft, or `?version=N`), its versions and its recent runs."""
    flow = found(services.flow_of, request.user, slug)
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
    })


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
            run, _ = services.start_run(request.user, flow, inputs_form.inputs(), version=version)
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
    return render(request, "flows/run.html", {
        "run": run, "flow": run.flow, "document": run.document.dsl, "state": state,
        "states": NODE_STATES,
        "socket_path": f"/ws/runs/{run.pk}/",
        "answer_url": reverse("api-run-answer", args=[run.pk]),
        "cancel_url": reverse("api-run-cancel", args=[run.pk]),
    })
