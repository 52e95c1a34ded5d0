"""Request bodies (strict: unknown fields and wrong types are refused, nothing is coerced)
and the representations of api.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from flows.models import Flow, FlowVersion, NodeRun, Run

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
    """A flow document: any JSON here; the DSL validator judges it (dsl.md §7)."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


class FlowCreateBody(Body):
    slug = Text(required=False, allow_null=True, allow_blank=True)
    dsl = Document()


class DocumentBody(Body):
    dsl = Document()


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
        fields = ["slug", "name", "description", "dsl", "published_version", "created_at",
                  "updated_at"]
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
                  "started_at", "finished_at", "elapsed_ms"]


class RunSerializer(serializers.ModelSerializer):
    """A row of `GET /api/runs/`: the run without its nodes."""

    flow = serializers.CharField(source="flow.slug", read_only=True)
    version = VersionLabel(source="version_label")
    dsl_hash = serializers.CharField(source="document_id", read_only=True)
    parent_run = serializers.UUIDField(source="parent_run_id", read_only=True, allow_null=True)
    waiting = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "flow", "version", "dsl_hash", "status", "inputs", "outputs", "answer",
                  "error", "created_at", "started_at", "finished_at", "elapsed_ms",
                  "recovered", "parent_run", "waiting"]
        read_only_fields = fields

    # The fields the representation reads, for `.only()` on lists.
    COLUMNS = ("id", "flow__slug", "version_number", "document_id", "status", "inputs",
               "outputs", "answer", "error", "created_at", "started_at", "finished_at",
               "elapsed_ms", "recovered", "parent_run_id", "waiting", "pending_answers")

    @extend_schema_field(QuestionSerializer(many=True))
    def get_waiting(self, run: Run) -> list[dict[str, Any]]:
        """Open questions: an answer stored but not yet applied closes its question."""
        answered = {answer["node"] for answer in run.pending_answers}
        return [question for question in run.waiting if question["node"] not in answered]


class RunDetailSerializer(RunSerializer):
    nodes = NodeRunSerializer(source="node_runs", many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "nodes"]
        read_only_fields = fields


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
