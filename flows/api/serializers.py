"""Request bodies (strict: unknown fields and wrong types are refused, nothing is coerced)
and the representations of docs/api.md."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from flows.models import (
    AuditEntry,
    Flow,
    FlowVersion,
    NodeRun,
    Run,
    Schedule,
    Secret,
    Webhook,
)
from flows.services.schedules import next_times
from flows.services.snapshots import open_questions

# --- Request bodies --------------------------------------------------------------------------


class Body(serializers.Serializer):
    """A JSON object with only the declared fields."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        value: dict[str, Any] = {}
        try:
            value = super().to_internal_value(data)
        except ValidationError as error:
            errors.update(error.detail)
        if isinstance(data, Mapping):
            for name in data:
                if name not in self.fields:
                    errors[name] = [ErrorDetail(f'"{name}" is not a field of this request',
                                                code="unknown_field")]
        if errors:
            raise ValidationError(errors)
        return value


class Text(serializers.CharField):
    """A JSON string, never a number turned into one."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise ValidationError(ErrorDetail("must be a string", code="wrong_type"))
        return super().to_internal_value(data)


@extend_schema_field({"type": "number", "minimum": 0, "maximum": 60})
class Seconds(serializers.Field):
    """A JSON number of seconds between 0 and `maximum`."""

    def __init__(self, maximum: float, **kwargs: Any):
        self.maximum = maximum
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise ValidationError(ErrorDetail("must be a number of seconds", code="wrong_type"))
        if not 0 <= data <= self.maximum:
            raise ValidationError(ErrorDetail(f"must be between 0 and {self.maximum}",
                                              code="invalid_value"))
        return float(data)

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"type": "object", "additionalProperties": True})
class Document(serializers.JSONField):
    """A flow document: any JSON here; the DSL validator judges it (docs/dsl.md §7)."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


class FlowCreateBody(Body):
    slug = Text(required=False, allow_null=True, allow_blank=True)
    dsl = Document()


class DocumentBody(Body):
    dsl = Document()


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": 10_000, "nullable": True})
class RunLimit(serializers.Field):
    """A JSON integer from 1 to 10,000, or null (no limit of the flow's own)."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ValidationError(ErrorDetail("must be an integer or null", code="wrong_type"))
        if not 1 <= data <= 10_000:
            raise ValidationError(ErrorDetail("must be between 1 and 10000",
                                              code="invalid_value"))
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class FlowUpdateBody(Body):
    """`dsl` replaces the draft, `max_active_runs` the flow's limit (docs/api.md, Capacity);
    either or both."""

    dsl = Document(required=False)
    max_active_runs = RunLimit(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise ValidationError({"dsl": [ErrorDetail("this field is required",
                                                       code="required")]})
        return attrs


@extend_schema_field({"oneOf": [{"type": "string", "enum": ["draft", "published"]},
                                {"type": "integer", "minimum": 1}]})
class VersionChoice(serializers.JSONField):
    """"draft", "published" or a version number; `services.start_run` judges the value."""


class RunStartBody(Body):
    inputs = serializers.JSONField(required=False, allow_null=True,
                                   help_text="The run's inputs (an object).")
    version = VersionChoice(required=False, allow_null=True)
    wait = Seconds(maximum=60, required=False, allow_null=True,
                   help_text="Answer when the run ends or waits, or after this many seconds.")


class AnswerBody(Body):
    answer = serializers.JSONField(allow_null=True, help_text="The answer's text.")
    option = serializers.JSONField(required=False, allow_null=True,
                                   help_text="The chosen option's id.")
    node = Text(required=False, allow_null=True,
                help_text="The question node; required when several are open.")


class EmptyBody(Body):
    """Action endpoints take an empty body or `{}`."""


# --- Representations -------------------------------------------------------------------------


class FlowSerializer(serializers.ModelSerializer):
    dsl = serializers.JSONField(source="draft", read_only=True)

    class Meta:
        model = Flow
        fields = ["slug", "name", "description", "dsl", "published_version", "max_active_runs",
                  "created_at", "updated_at"]
        read_only_fields = fields


class PublishedSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="number")
    hash = serializers.CharField()


class VersionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="number")
    hash = serializers.CharField(source="document_id")

    class Meta:
        model = FlowVersion
        fields = ["version", "hash", "created_at"]


class VersionDetailSerializer(VersionSerializer):
    dsl = serializers.JSONField(source="document.dsl")

    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "dsl"]


class ProblemSerializer(serializers.Serializer):
    path = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class ValidationResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = ProblemSerializer(many=True)


class QuestionSerializer(serializers.Serializer):
    node = serializers.CharField()
    question = serializers.CharField()
    options = serializers.ListField(child=serializers.DictField())
    timeout_at = serializers.DateTimeField(allow_null=True)


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["draft"]}]})
class VersionLabel(serializers.ReadOnlyField):
    """The run's version number, or "draft"."""


class NodeRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = NodeRun
        fields = ["node", "type", "status", "attempts", "inputs", "outputs", "error",
                  "started_at", "finished_at", "elapsed_ms", "reused"]

    def to_representation(self, node: NodeRun) -> dict[str, Any]:
        return node_row(node, timezone.get_current_timezone())


class RunSerializer(serializers.ModelSerializer):
    """A row of `GET /api/runs/`: the run without its nodes.

    The declared fields describe the representation (the OpenAPI schema is made from them);
    the rows themselves are written by `run_row`, which reads a model or a `.values()` row:
    DRF's field-by-field representation cost 8x more per row, the largest part of a list
    request after the query (docs/benchmarks.md). tests/platform/test_api_runs.py checks
    that both give the same JSON.
    """

    flow = serializers.CharField(source="flow.slug", read_only=True)
    version = VersionLabel(source="version_label")
    dsl_hash = serializers.CharField(source="document_id", read_only=True)
    parent_run = serializers.UUIDField(source="parent_run_id", read_only=True, allow_null=True)
    retry_of = serializers.UUIDField(source="retry_of_id", read_only=True, allow_null=True,
                                     help_text="The run this one retries, or null")
    trigger = serializers.JSONField(read_only=True, help_text=(
        'What started the run: {"type": "api" | "page" | "admin" | "command" | "webhook" | '
        '"schedule" | "rerun" | "retry" | "subflow", …}'))
    waiting = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "flow", "version", "dsl_hash", "trigger", "retry_of", "status",
                  "inputs", "outputs", "answer", "error", "created_at", "started_at",
                  "finished_at", "elapsed_ms", "recovered", "parent_run", "waiting"]
        read_only_fields = fields

    # The columns `run_row` reads (`flow_slug` is the flow's slug), for `.values()` lists.
    COLUMNS = ("id", "version_number", "document_id", "status", "inputs", "outputs", "answer",
               "error", "created_at", "started_at", "finished_at", "elapsed_ms", "recovered",
               "parent_run_id", "waiting", "pending_answers", "trigger", "retry_of_id")

    @classmethod
    def rows(cls, runs: QuerySet[Run]) -> QuerySet:
        """The runs as the dictionaries `run_row` reads: no model instances to build."""
        return runs.values(*cls.COLUMNS, flow_slug=F("flow__slug"))

    @extend_schema_field(QuestionSerializer(many=True))
    def get_waiting(self, run: Run) -> list[dict[str, Any]]:
        return open_questions(run.waiting, run.pending_answers)

    def to_representation(self, run: Run | Mapping[str, Any]) -> dict[str, Any]:
        return run_row(run if isinstance(run, Mapping) else run_columns(run),
                       timezone.get_current_timezone())


class RunDetailSerializer(RunSerializer):
    nodes = NodeRunSerializer(source="node_runs", many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "nodes"]
        read_only_fields = fields

    def to_representation(self, run: Run) -> dict[str, Any]:
        zone = timezone.get_current_timezone()
        row = run_row(run_columns(run), zone)
        # A run just created has no node yet (the context says so): no query to find none.
        nodes = [] if self.context.get("just_created") else run.node_runs.all()
        row["nodes"] = [node_row(node, zone) for node in nodes]
        return row


def run_columns(run: Run) -> dict[str, Any]:
    """A run model as the row `run_row` reads."""
    row = {name: getattr(run, name) for name in RunSerializer.COLUMNS}
    row["flow_slug"] = run.flow.slug
    return row


def run_row(run: Mapping[str, Any], zone: tzinfo) -> dict[str, Any]:
    """A run's representation, as DRF's fields would write it (times ISO 8601 with Z)."""
    version = run["version_number"]
    parent = run["parent_run_id"]
    answer = run["answer"]
    return {
        "id": str(run["id"]),
        "flow": run["flow_slug"],
        "version": version if version is not None else "draft",
        "dsl_hash": run["document_id"],
        # Rows written before triggers, or by hand: what started them is what usually does.
        "trigger": run["trigger"] or ({"type": "subflow", "run": str(parent)} if parent
                                      else {"type": "api"}),
        "retry_of": str(run["retry_of_id"]) if run["retry_of_id"] is not None else None,
        "status": run["status"],
        "inputs": run["inputs"],
        "outputs": run["outputs"],
        "answer": answer if answer is None else str(answer),
        "error": run["error"],
        "created_at": iso_time(run["created_at"], zone),
        "started_at": iso_time(run["started_at"], zone),
        "finished_at": iso_time(run["finished_at"], zone),
        "elapsed_ms": float(run["elapsed_ms"]),
        "recovered": int(run["recovered"]),
        "parent_run": parent if parent is None else str(parent),
        "waiting": open_questions(run["waiting"], run["pending_answers"]),
    }


def node_row(node: NodeRun, zone: tzinfo) -> dict[str, Any]:
    elapsed = node.elapsed_ms
    return {
        "node": node.node, "type": node.type, "status": node.status,
        "attempts": node.attempts, "inputs": node.inputs, "outputs": node.outputs,
        "error": node.error, "started_at": iso_time(node.started_at, zone),
        "finished_at": iso_time(node.finished_at, zone),
        "elapsed_ms": elapsed if elapsed is None else float(elapsed),
        "reused": node.reused,
    }


def iso_time(moment: datetime | None, zone: tzinfo) -> str | None:
    """DRF's ISO 8601 output: in the current time zone, UTC written as Z."""
    if moment is None:
        return None
    text = moment.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class EventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    type = serializers.CharField()
    ts = serializers.CharField()
    run = serializers.UUIDField()
    scope = serializers.CharField(allow_null=True)
    item = serializers.IntegerField(allow_null=True)
    data = serializers.DictField()


class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    next_after = serializers.IntegerField(allow_null=True)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.ListField(child=serializers.DictField())


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- Secrets, webhooks, schedules (docs/api.md; the services judge the values) ---------------


class SecretSerializer(serializers.ModelSerializer):
    class Meta:
        model = Secret
        fields = ["name", "description", "created_at", "updated_at", "last_used_at"]
        read_only_fields = fields


class SecretCreateBody(Body):
    name = serializers.JSONField(help_text="^[A-Z][A-Z0-9_]{0,63}$, unique among yours")
    value = serializers.JSONField(help_text="A non-empty string up to 64 KiB; never shown again")
    description = serializers.JSONField(required=False, allow_null=True)


class SecretUpdateBody(Body):
    value = serializers.JSONField(help_text="The new value: runs started afterwards use it")
    description = serializers.JSONField(required=False, allow_null=True)


@extend_schema_field({"oneOf": [{"type": "string", "enum": ["draft", "published"]},
                                {"type": "integer", "minimum": 1}]})
class StoredVersion(serializers.Field):
    """A version kept as text ("published", "draft", "3"), shown as the API writes it."""

    def to_representation(self, value: str) -> str | int:
        return int(value) if value.isdigit() else value


class WebhookSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    version = StoredVersion(read_only=True)

    class Meta:
        model = Webhook
        fields = ["id", "url", "version", "created_at", "last_delivery_at"]
        read_only_fields = fields

    def get_url(self, hook: Webhook) -> str:
        path = f"/hooks/{hook.pk}/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class WebhookCreatedSerializer(WebhookSerializer):
    signing_secret = serializers.SerializerMethodField(
        help_text="Shown only in this answer: sign deliveries with it")

    class Meta(WebhookSerializer.Meta):
        fields = ["id", "url", "signing_secret", "version", "created_at"]
        read_only_fields = fields

    def get_signing_secret(self, hook: Webhook) -> str:
        return self.context["signing_secret"]


class WebhookCreateBody(Body):
    version = VersionChoice(required=False, allow_null=True)


class DeliveryAcceptedSerializer(serializers.Serializer):
    run = serializers.UUIDField()
    status = serializers.CharField()


class ScheduleSerializer(serializers.ModelSerializer):
    version = StoredVersion(read_only=True)
    next_runs = serializers.SerializerMethodField(
        help_text="The next 5 scheduled times, ISO 8601 UTC (empty while disabled)")
    last_run = serializers.UUIDField(source="last_run_id", read_only=True, allow_null=True)

    class Meta:
        model = Schedule
        fields = ["id", "cron", "timezone", "inputs", "version", "enabled", "next_runs",
                  "last_fired_at", "last_run", "last_error", "created_at", "updated_at"]
        read_only_fields = fields

    @extend_schema_field({"type": "array", "items": {"type": "string", "format": "date-time"}})
    def get_next_runs(self, schedule: Schedule) -> list[str]:
        if not schedule.enabled:
            return []
        return [iso_time(moment, UTC) for moment in next_times(schedule)]


class ScheduleBody(Body):
    cron = serializers.JSONField(help_text='Five fields, e.g. "*/15 9-17 * * 1-5"')
    timezone = serializers.JSONField(required=False, allow_null=True,
                                     help_text="An IANA name; UTC when absent")
    inputs = serializers.JSONField(required=False, allow_null=True)
    version = VersionChoice(required=False, allow_null=True)
    enabled = serializers.JSONField(required=False, help_text="true (default) or false")


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField(help_text="The username, or null for the system")
    object = serializers.SerializerMethodField()

    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor", "via", "action", "object", "details"]
        read_only_fields = fields

    def get_actor(self, entry: AuditEntry) -> str | None:
        return entry.actor_name or None

    @extend_schema_field({"type": "object", "properties": {"type": {"type": "string"},
                                                           "id": {"type": "string"}}})
    def get_object(self, entry: AuditEntry) -> dict[str, str]:
        return {"type": entry.object_type, "id": entry.object_id}
