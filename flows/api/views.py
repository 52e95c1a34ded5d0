"""The API's views (docs/api.md): read, check the body, call one service, represent the result.

Every change of state goes through `flows.services`; lookups go through `flow_of`/`run_of`,
so someone else's object answers 404 like a missing one.
"""

from __future__ import annotations

from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from engine import document_json_schema
from engine.events import MAX_SEQ
from flows import services
from flows.api import serializers as s
from flows.api.filters import FlowFilter, RunFilter
from flows.api.pagination import HighestVersionFirst
from flows.api.waiting import wait_for_run
from flows.errors import ServiceError
from flows.models import Flow, FlowVersion, Run, RunEvent

EVENTS_PAGE = 1000

ERRORS = {code: OpenApiResponse(s.ErrorSerializer, description=text) for code, text in {
    400: "The request is not valid", 404: "Not found (or not yours)",
    409: "Refused in the current state"}.items()}
RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def valid(body_class: type[s.Body], request) -> dict:
    body = body_class(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data


class ActionView(APIView):
    """An action endpoint: its body is empty or `{}` (form posts without fields included)."""

    parser_classes = [*APIView.parser_classes, FormParser, MultiPartParser]


# --- Flows ------------------------------------------------------------------------------------


class FlowList(generics.ListAPIView):
    serializer_class = s.FlowSerializer
    filterset_class = FlowFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Flow.objects.none()
        return Flow.objects.filter(owner=self.request.user, deleted_at__isnull=True)

    @extend_schema(summary="Own flows, newest first")
    def get(self, request):
        return self.list(request)

    @extend_schema(summary="Create a flow", request=s.FlowCreateBody,
                   responses={201: s.FlowSerializer, 400: ERRORS[400],
                              409: ERRORS[409]})
    def post(self, request):
        body = valid(s.FlowCreateBody, request)
        flow = services.create_flow(request.user, body["dsl"], slug=body.get("slug"))
        return Response(s.FlowSerializer(flow).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/flows/{flow.slug}/"})


class FlowDetail(APIView):
    @extend_schema(summary="A flow", responses={200: s.FlowSerializer, 404: ERRORS[404]})
    def get(self, request, slug):
        return Response(s.FlowSerializer(services.flow_of(request.user, slug)).data)

    @extend_schema(summary="Replace the draft, or the flow's limit of runs at once",
                   request=s.FlowUpdateBody,
                   responses={200: s.FlowSerializer, 400: ERRORS[400], 404: ERRORS[404]})
    def put(self, request, slug):
        flow = services.flow_of(request.user, slug)
        body = valid(s.FlowUpdateBody, request)
        return Response(s.FlowSerializer(services.update_flow(flow, **body)).data)

    @extend_schema(summary="Delete a flow (its runs stay readable)",
                   responses={204: None, 404: ERRORS[404]})
    def delete(self, request, slug):
        services.delete_flow(services.flow_of(request.user, slug))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlowValidate(APIView):
    @extend_schema(summary="Validate a flow document; stores nothing", request=s.DocumentBody,
                   responses={200: s.ValidationResultSerializer, 400: ERRORS[400]})
    def post(self, request):
        body = valid(s.DocumentBody, request)
        problems = services.problems_of(request.user, body["dsl"])
        return Response({"valid": not problems,
                         "errors": [problem.to_dict() for problem in problems]})


class FlowPublish(ActionView):
    @extend_schema(summary="Publish the draft as the next version", request=s.EmptyBody,
                   responses={201: s.PublishedSerializer, 200: s.PublishedSerializer,
                              400: ERRORS[400], 404: ERRORS[404]})
    def post(self, request, slug):
        flow = services.flow_of(request.user, slug)
        valid(s.EmptyBody, request)
        version, created = services.publish_flow(flow)
        return Response(s.PublishedSerializer(version).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class FlowVersions(generics.ListAPIView):
    serializer_class = s.VersionSerializer
    pagination_class = HighestVersionFirst

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return FlowVersion.objects.none()
        return services.flow_of(self.request.user, self.kwargs["slug"]).versions.all()

    @extend_schema(summary="Published versions, newest first")
    def get(self, request, slug):
        return self.list(request)


class FlowVersionDetail(APIView):
    @extend_schema(summary="One version with its document",
                   responses={200: s.VersionDetailSerializer, 404: ERRORS[404]})
    def get(self, request, slug, number):
        flow = services.flow_of(request.user, slug)
        version = None
        if 0 < number <= MAX_SEQ:
            version = flow.versions.select_related("document").filter(number=number).first()
        if version is None:
            raise ServiceError(404, "not_found", f'the flow "{slug}" has no version {number}')
        return Response(s.VersionDetailSerializer(version).data)


class FlowExport(APIView):
    @extend_schema(summary="The draft document, ready to import elsewhere",
                   responses={200: OpenApiTypes.OBJECT, 404: ERRORS[404]})
    def get(self, request, slug):
        return Response(services.flow_of(request.user, slug).draft)


# --- Runs -------------------------------------------------------------------------------------


class FlowRuns(APIView):
    @extend_schema(
        summary="Start a run",
        request=s.RunStartBody,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="Repeats with the same key and body answer "
                                                 "the first run (at most 200 characters).")],
        responses={201: s.RunDetailSerializer, 200: s.RunDetailSerializer, 400: ERRORS[400],
                   404: ERRORS[404], 409: ERRORS[409]})
    def post(self, request, slug):
        flow = services.flow_of(request.user, slug, for_run=True)
        body = valid(s.RunStartBody, request)
        run, created = services.start_run(
            request.user, flow, body.get("inputs", {}), version=body.get("version"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            fingerprint=services.request_fingerprint({"flow": slug, "body": request.data}))
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        if body.get("wait"):
            # The run as it is once it settled or the time is up: answered by the server's
            # waiting layer, which holds no thread and no connection (flows/api/waiting.py).
            waits = wait_for_run(request, request.user, run.pk, body["wait"])
            if waits:
                return Response(None, status=answer, headers=waits)
            run = services.run_of(request.user, run.pk)
        # The run as it was just created (queued, no node yet) needs no reading back.
        elif not created:
            run = services.run_of(request.user, run.pk)
        just_created = created and not body.get("wait")
        return Response(s.RunDetailSerializer(run, context={"just_created": just_created}).data,
                        status=answer)


class RunList(generics.ListAPIView):
    serializer_class = s.RunSerializer
    filterset_class = RunFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Run.objects.none()
        return s.RunSerializer.rows(Run.objects.filter(owner=self.request.user))

    @extend_schema(summary="Own runs, newest first")
    def get(self, request):
        return self.list(request)


class RunDetail(APIView):
    @extend_schema(summary="A run with its nodes", parameters=[RUN_ID],
                   responses={200: s.RunDetailSerializer, 404: ERRORS[404]})
    def get(self, request, run_id):
        return Response(s.RunDetailSerializer(services.run_of(request.user, run_id)).data)


class RunEvents(APIView):
    @extend_schema(
        summary="Stored events after a seq, oldest first",
        parameters=[RUN_ID, OpenApiParameter("after", int, description="Events with a greater "
                                             "seq (default 0)")],
        responses={200: s.EventPageSerializer, 400: ERRORS[400], 404: ERRORS[404]})
    def get(self, request, run_id):
        run = services.run_of(request.user, run_id)
        after = after_param(request.query_params.get("after", "0"))
        events = list(RunEvent.objects.filter(run=run, seq__gt=after)
                      .order_by("seq")[:EVENTS_PAGE + 1])
        more = len(events) > EVENTS_PAGE
        events = events[:EVENTS_PAGE]
        return Response({"results": [event.envelope() for event in events],
                         "next_after": events[-1].seq if more else None})


def after_param(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ServiceError(400, "invalid_request", "after must be a sequence number",
                           [{"path": "after", "code": "invalid_value",
                             "message": f"{value[:50]!r} is not a whole number >= 0"}])
    return min(int(value), MAX_SEQ)


class RunAnswer(APIView):
    @extend_schema(summary="Answer an open question", parameters=[RUN_ID], request=s.AnswerBody,
                   responses={202: s.RunDetailSerializer, 400: ERRORS[400], 404: ERRORS[404],
                              409: ERRORS[409]})
    def post(self, request, run_id):
        run = services.run_of(request.user, run_id)
        body = valid(s.AnswerBody, request)
        services.answer_run(run, body["answer"], option=body.get("option"),
                            node=body.get("node"), by=request.user.get_username())
        return Response(s.RunDetailSerializer(services.run_of(request.user, run.pk)).data,
                        status=status.HTTP_202_ACCEPTED)


class RunCancel(ActionView):
    @extend_schema(summary="Cancel a run", parameters=[RUN_ID], request=s.EmptyBody,
                   responses={202: s.RunDetailSerializer, 404: ERRORS[404], 409: ERRORS[409]})
    def post(self, request, run_id):
        run = services.run_of(request.user, run_id)
        valid(s.EmptyBody, request)
        run = services.cancel_run(run)
        return Response(s.RunDetailSerializer(services.run_of(request.user, run.pk)).data,
                        status=status.HTTP_202_ACCEPTED)


# --- Documentation ----------------------------------------------------------------------------


class Documentation:
    """A documentation endpoint: read-only (GET and HEAD; anything else is 405), and every
    refusal in the API's error shape as JSON, whatever renders its page (HTML, YAML)."""

    http_method_names = ["get", "head"]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if getattr(response, "exception", False):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response


class OpenApiSchema(Documentation, SpectacularAPIView):
    """The OpenAPI document, in JSON unless YAML is asked for (`?format=yaml` or Accept)."""

    renderer_classes = [OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer,
                        OpenApiYamlRenderer2]


class DocsPage(Documentation, SpectacularSwaggerView):
    """The interactive page of the OpenAPI document (assets served by the project)."""


class DslSchema(Documentation, APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(summary="The JSON Schema of flow documents (astron/v1)",
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(document_json_schema())
