"""Query filters of the list endpoints; a malformed value is a 400, never a 500."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django.db.models import Q
from django_filters.rest_framework import DjangoFilterBackend

from flows import lookup
from flows.audit import ACTIONS as AUDIT_ACTIONS
from flows.errors import ServiceError
from flows.models import AuditEntry, Flow, Run
from flows.services.documents import SLUG_PATTERN

TRIGGERS = ("api", "page", "admin", "command", "webhook", "schedule", "rerun", "retry",
            "subflow")
# As long as the longest name (Flow.name), longer than any slug. SQLite refuses a LIKE
# pattern of 50,000 bytes ("too complex"): a longer search is refused on every backend alike.
SEARCH_MAX = 200


class FlowFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", max_length=SEARCH_MAX,
                                  label="Name or slug contains")

    class Meta:
        model = Flow
        fields = ["q"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class RunFilter(django_filters.FilterSet):
    flow = django_filters.CharFilter(method="of_flow", label="The flow's slug")
    status = django_filters.ChoiceFilter(choices=Run.Status.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gt")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    trigger = django_filters.ChoiceFilter(choices=[(kind, kind) for kind in TRIGGERS],
                                          method="started_by", label="What started the runs")

    class Meta:
        model = Run
        fields = ["flow", "status", "created_after", "created_before", "trigger"]

    def started_by(self, queryset, name, value):
        # `trigger -> 'type'`: the expression of the (owner, trigger type, created_at) index.
        return queryset.filter(trigger__type=value)

    def of_flow(self, queryset, name, value):
        # Resolved first (one indexed lookup, deleted flows included: their runs stay
        # readable) so that the page query uses the (owner, flow, created_at) index.
        # A slug found missing a moment ago is answered without a query (flows/lookup.py).
        flow_id = None
        owner_id = self.request.user.pk
        if SLUG_PATTERN.match(value) and not lookup.known_missing(owner_id, value,
                                                                 include_deleted=True):
            flow_id = (Flow.objects.filter(owner=self.request.user, slug=value)
                       .values_list("pk", flat=True).first())
            if flow_id is None:
                lookup.note_missing(owner_id, value)
        return queryset.filter(flow_id=flow_id) if flow_id else queryset.none()


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with its refusals in the API's error shape: one detail per
    query parameter, its name as the path."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        details = []
        if filterset.is_valid():
            for name, value in filterset.form.cleaned_data.items():
                if hasattr(value, "astimezone"):
                    try:
                        # In UTC: PostgreSQL refuses offsets beyond ±15:59 (`+20:00`), which
                        # ISO 8601 parsing lets through.
                        filterset.form.cleaned_data[name] = value.astimezone(UTC)
                    except (OverflowError, ValueError):
                        details.append({"path": name, "code": "invalid_value",
                                        "message": "the date is out of range"})
        else:
            for name, errors in filterset.errors.get_json_data().items():
                details += [{"path": name, "code": "invalid_value", "message": e["message"]}
                            for e in errors]
        if details:
            raise ServiceError(400, "invalid_request", "a query parameter is not valid", details)
        return filterset.qs


class AuditFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=[(a, a) for a in AUDIT_ACTIONS])
    flow = django_filters.CharFilter(method="of_flow", label="The flow's slug")
    run = django_filters.UUIDFilter(field_name="run_id", label="A run's id")

    class Meta:
        model = AuditEntry
        fields = ["action", "flow", "run"]

    def of_flow(self, queryset, name, value):
        # The owner's flow by slug, deleted ones included; any other slug finds nothing.
        flow_id = (Flow.objects.filter(owner=self.request.user, slug=value)
                   .values_list("pk", flat=True).first()) if SLUG_PATTERN.match(value) else None
        return queryset.filter(flow_id=flow_id) if flow_id else queryset.none()
