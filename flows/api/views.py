"""The API's views (docs/api.md): read, check the body, call one service, represent the result.

Every change of state goes through `flows.services`; lookups go through `flow_of`/`run_of`,
so someone else's object answers 404 like a missing one.
"""

from __future__ import annotations

from typing import Any

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
from flows.api.filters import AuditFilter, FlowFilter, RunFilter
from flows.api.pagination import ByName, HighestVersionFirst, NewestEntriesFirst
from flows.api.throttling import WebhookRateThrottle
from flows.api.waiting import wait_for_run
from flows.errors import ServiceError
from flows.models import (
    AuditEntry,
    Flow,
    FlowVersion,
    Run,
    RunEvent,
    Schedule,
    Secret,
    Webhook,
)
from flows.services import schedules as schedule_service
from flows.services import secrets as secret_store
from flows.services import webhooks as webhook_service

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


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER,
    description="Repeats with the same key and body answer the first run (at most 200 "
                "characters).")


class RunAgain(ActionView):
    """`rerun` and `retry` (docs/api.md, "Re-running and retrying"): a new run → 201."""

    action: str
    start: Any

    def post(self, request, run_id):
        run = services.run_of(request.user, run_id)
        valid(s.EmptyBody, request)
        again, created = self.start(
            request.user, run, idempotency_key=request.headers.get("Idempotency-Key"),
            fingerprint=services.request_fingerprint({self.action: str(run.pk)}))
        if not created:
            again = services.run_of(request.user, again.pk)
        return Response(s.RunDetailSerializer(again, context={"just_created": created}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RunRerun(RunAgain):
    action, start = "rerun", staticmethod(services.rerun_run)

    @extend_schema(summary="Run a finished run again: same snapshot, same inputs",
                   parameters=[RUN_ID, IDEMPOTENCY_KEY], request=s.EmptyBody,
                   responses={201: s.RunDetailSerializer, 200: s.RunDetailSerializer,
                              404: ERRORS[404], 409: ERRORS[409]})
    def post(self, request, run_id):
        return super().post(request, run_id)


class RunRetry(RunAgain):
    action, start = "retry", staticmethod(services.retry_run)

    @extend_schema(summary="Retry a failed or cancelled run from where it failed",
                   description="A new run that takes over every node that ended succeeded, "
                               "recovered or skipped and executes the rest.",
                   parameters=[RUN_ID, IDEMPOTENCY_KEY], request=s.EmptyBody,
                   responses={201: s.RunDetailSerializer, 200: s.RunDetailSerializer,
                              404: ERRORS[404], 409: ERRORS[409]})
    def post(self, request, run_id):
        return super().post(request, run_id)


# --- Audit log --------------------------------------------------------------------------------


class AuditList(generics.ListAPIView):
    serializer_class = s.AuditEntrySerializer
    pagination_class = NewestEntriesFirst
    filterset_class = AuditFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEntry.objects.none()
        return AuditEntry.objects.filter(owner=self.request.user)

    @extend_schema(summary="Your audit log, newest first")
    def get(self, request):
        return self.list(request)


# --- Secrets ----------------------------------------------------------------------------------


class SecretList(generics.ListAPIView):
    serializer_class = s.SecretSerializer
    pagination_class = ByName

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Secret.objects.none()
        return secret_store.secrets_of(self.request.user)

    @extend_schema(summary="Own secrets by name (never their values)")
    def get(self, request):
        return self.list(request)

    @extend_schema(summary="Store a secret", request=s.SecretCreateBody,
                   responses={201: s.SecretSerializer, 400: ERRORS[400], 409: ERRORS[409]})
    def post(self, request):
        body = valid(s.SecretCreateBody, request)
        secret = secret_store.create_secret(request.user, body["name"], body["value"],
                                            body.get("description"))
        return Response(s.SecretSerializer(secret).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/secrets/{secret.name}/"})


class SecretDetail(APIView):
    @extend_schema(summary="A secret (never its value)",
                   responses={200: s.SecretSerializer, 404: ERRORS[404]})
    def get(self, request, name):
        return Response(s.SecretSerializer(secret_store.secret_of(request.user, name)).data)

    @extend_schema(summary="Give a secret a new value", request=s.SecretUpdateBody,
                   responses={200: s.SecretSerializer, 400: ERRORS[400], 404: ERRORS[404]})
    def put(self, request, name):
        secret = secret_store.secret_of(request.user, name)
        body = valid(s.SecretUpdateBody, request)
        secret = secret_store.update_secret(secret, body["value"], body.get("description"))
        return Response(s.SecretSerializer(secret).data)

    @extend_schema(summary="Delete a secret", responses={204: None, 404: ERRORS[404]})
    def delete(self, request, name):
        secret_store.delete_secret(secret_store.secret_of(request.user, name))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Webhooks ---------------------------------------------------------------------------------


class FlowWebhooks(generics.ListAPIView):
    serializer_class = s.WebhookSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Webhook.objects.none()
        return webhook_service.webhooks_of(services.flow_of(self.request.user,
                                                            self.kwargs["slug"]))

    @extend_schema(summary="A flow's webhooks (without their signing secrets)")
    def get(self, request, slug):
        return self.list(request)

    @extend_schema(summary="Create a webhook; its signing secret is shown only here",
                   request=s.WebhookCreateBody,
                   responses={201: s.WebhookCreatedSerializer, 400: ERRORS[400],
                              404: ERRORS[404]})
    def post(self, request, slug):
        flow = services.flow_of(request.user, slug)
        body = valid(s.WebhookCreateBody, request)
        hook, signing_secret = webhook_service.create_webhook(flow, body.get("version"))
        context = {"request": request, "signing_secret": signing_secret}
        return Response(s.WebhookCreatedSerializer(hook, context=context).data,
                        status=status.HTTP_201_CREATED)


class FlowWebhook(APIView):
    @extend_schema(summary="Delete a webhook: its URL answers 404 from then on",
                   responses={204: None, 404: ERRORS[404]})
    def delete(self, request, slug, hook_id):
        flow = services.flow_of(request.user, slug)
        webhook_service.delete_webhook(webhook_service.webhook_of(flow, hook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDelivery(APIView):
    """`POST /hooks/{id}/`: no credentials, a signature instead (docs/api.md, Webhooks)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [WebhookRateThrottle]

    @extend_schema(
        summary="Deliver to a webhook: start its flow's run",
        request={"application/json": {"type": "object", "additionalProperties": True}},
        parameters=[
            OpenApiParameter("Astron-Signature", str, OpenApiParameter.HEADER, required=True,
                             description="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + "
                                         "the raw body, keyed with the signing secret>"),
            OpenApiParameter("Astron-Delivery", str, OpenApiParameter.HEADER,
                             description="The delivery's id: a repeat starts nothing new")],
        responses={202: s.DeliveryAcceptedSerializer, 400: ERRORS[400],
                   401: OpenApiResponse(s.ErrorSerializer, description="bad_signature"),
                   404: ERRORS[404], 409: ERRORS[409]})
    def post(self, request, hook_id):
        # The raw bytes, as signed: the body is parsed only once the signature holds.
        run, _created = webhook_service.deliver(
            hook_id, request.body, request.headers.get(webhook_service.SIGNATURE_HEADER),
            request.headers.get(webhook_service.DELIVERY_HEADER))
        return Response({"run": str(run.pk), "status": run.status},
                        status=status.HTTP_202_ACCEPTED)


# --- Schedules --------------------------------------------------------------------------------


class FlowSchedules(generics.ListAPIView):
    serializer_class = s.ScheduleSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Schedule.objects.none()
        return schedule_service.schedules_of(services.flow_of(self.request.user,
                                                              self.kwargs["slug"]))

    @extend_schema(summary="A flow's schedules with their next times")
    def get(self, request, slug):
        return self.list(request)

    @extend_schema(summary="Schedule a flow with cron", request=s.ScheduleBody,
                   responses={201: s.ScheduleSerializer, 400: ERRORS[400], 404: ERRORS[404],
                              409: ERRORS[409]})
    def post(self, request, slug):
        flow = services.flow_of(request.user, slug)
        body = valid(s.ScheduleBody, request)
        schedule = schedule_service.create_schedule(
            flow, body["cron"], body.get("timezone"), body.get("inputs"), body.get("version"),
            body.get("enabled", True))
        return Response(s.ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)


class FlowSchedule(APIView):
    @extend_schema(summary="A schedule",
                   responses={200: s.ScheduleSerializer, 404: ERRORS[404]})
    def get(self, request, slug, schedule_id):
        flow = services.flow_of(request.user, slug)
        return Response(s.ScheduleSerializer(
            schedule_service.schedule_of(flow, schedule_id)).data)

    @extend_schema(summary="Replace a schedule", request=s.ScheduleBody,
                   responses={200: s.ScheduleSerializer, 400: ERRORS[400], 404: ERRORS[404],
                              409: ERRORS[409]})
    def put(self, request, slug, schedule_id):
        flow = services.flow_of(request.user, slug)
        schedule = schedule_service.schedule_of(flow, schedule_id)
        body = valid(s.ScheduleBody, request)
        schedule = schedule_service.update_schedule(
            schedule, body["cron"], body.get("timezone"), body.get("inputs"),
            body.get("version"), body.get("enabled", True))
        return Response(s.ScheduleSerializer(schedule).data)

    @extend_schema(summary="Delete a schedule", responses={204: None, 404: ERRORS[404]})
    def delete(self, request, slug, schedule_id):
        flow = services.flow_of(request.user, slug)
        schedule_service.delete_schedule(schedule_service.schedule_of(flow, schedule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


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
