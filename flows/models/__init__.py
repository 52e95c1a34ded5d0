"""Flows, their immutable versions, runs with their node executions and events, API tokens;
secrets, webhooks and schedules in flows/models/triggers.py.

Indexes follow the real queries (docs/platform.md shows their EXPLAIN plans): runs of an
owner newest first, filtered by flow, status or time; events of a run after a seq; node
runs of a run; runs whose lease expired; waiting runs whose question deadline passed.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KeyTransform

from engine.events import Event, envelope


class Document(models.Model):
    """A flow document stored once by content: versions and draft runs point here.

    `plan` holds the compiled plan (plain JSON) so that no process compiles it twice.
    """

    hash = models.CharField(max_length=71, primary_key=True)  # "sha256:" + 64 hex
    dsl = models.JSONField()
    plan = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.hash[:19]


class Flow(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="flows")
    slug = models.SlugField(max_length=63)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    draft = models.JSONField()
    draft_hash = models.CharField(max_length=71)
    published_version = models.PositiveIntegerField(null=True, blank=True)
    # At most this many of the flow's runs execute at once (docs/api.md, Capacity); None: no
    # limit of its own (the owner's RUN_MAX_ACTIVE_PER_OWNER still holds).
    max_active_runs = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Deleted flows keep their slug taken, so the constraint covers them too.
            models.UniqueConstraint(fields=["owner", "slug"], name="flow_slug_unique_per_owner"),
        ]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="flow_owner_recent")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class FlowVersion(models.Model):
    """A published version: frozen, never edited."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="versions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flow", "number"], name="version_number_unique"),
        ]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.flow_id} v{self.number}"

    @property
    def hash(self) -> str:
        return self.document_id


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="runs")
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="runs")
    # The snapshot it runs: a version, or the draft frozen by hash when the run started.
    version = models.ForeignKey(FlowVersion, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="runs")
    version_number = models.PositiveIntegerField(null=True, blank=True)  # None: the draft
    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(null=True, blank=True)
    answer = models.TextField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    waiting = models.JSONField(default=list, blank=True)  # open questions
    pending_answers = models.JSONField(default=list, blank=True)  # answers not yet applied
    answer_serial = models.PositiveIntegerField(default=0)  # bumped by every answer stored
    cancel_requested = models.BooleanField(default=False)
    wake_at = models.DateTimeField(null=True, blank=True)  # earliest question deadline
    recovered = models.PositiveIntegerField(default=0)  # top-level nodes that ended recovered
    resumed_after_crash = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    elapsed_ms = models.FloatField(default=0)
    last_seq = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=100, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every claim: a write that names an older token comes from a worker that lost
    # the run, and is refused (fencing: flows/services/lifecycle.py).
    lease_token = models.PositiveIntegerField(default=0)
    # Executions in a row that never ended (their worker died): counted at each claim,
    # cleared when the run pauses or finishes. A run that kills every worker that takes it
    # fails with worker_lost after RUN_MAX_RECOVERIES of them.
    unfinished_executions = models.PositiveSmallIntegerField(default=0)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    parent_run = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="children")
    parent_node = models.CharField(max_length=64, blank=True, default="")
    depth = models.PositiveSmallIntegerField(default=0)
    # The W3C traceparent of the request that started the run ("" when it was not traced):
    # the run's spans join that trace wherever and whenever the run executes (tracing/).
    trace_parent = models.CharField(max_length=55, blank=True, default="")
    # What started it (docs/api.md, Runs): {"type": "api" | "webhook" | "schedule" | …, …}.
    trigger = models.JSONField(default=dict, blank=True)
    # The failed or cancelled run this one retries, taking over its finished nodes.
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="retries")

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="run_owner_recent"),
            models.Index(fields=["owner", "flow", "-created_at"], name="run_owner_flow_recent"),
            models.Index(fields=["owner", "status", "-created_at"],
                         name="run_owner_status_recent"),
            # `?trigger=`: runs of an owner started by one kind of trigger, newest first.
            models.Index(F("owner"), KeyTransform("type", "trigger"), F("created_at").desc(),
                         name="run_owner_trigger_recent"),
            models.Index(fields=["lease_expires_at"], name="run_active_lease",
                         condition=Q(status__in=["queued", "running"])),
            models.Index(fields=["wake_at"], name="run_waiting_wake",
                         condition=Q(status="waiting", wake_at__isnull=False)),
            models.Index(fields=["created_at"], name="run_created"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["owner", "idempotency_key"],
                                    condition=Q(idempotency_key__isnull=False),
                                    name="run_idempotency_key_unique"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def version_label(self) -> int | str:
        return self.version_number if self.version_number is not None else "draft"


class NodeRun(models.Model):
    """One top-level node's execution in a run (iteration bodies show as their node)."""

    # No index of its own: the unique (run, node) index leads with the run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="node_runs",
                            db_index=False)
    node = models.CharField(max_length=64)
    type = models.CharField(max_length=20)
    status = models.CharField(max_length=10)
    attempts = models.PositiveIntegerField(default=0)
    inputs = models.JSONField(null=True, blank=True)
    outputs = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    logs = models.TextField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    elapsed_ms = models.FloatField(null=True, blank=True)
    position = models.PositiveIntegerField(default=0)  # order in which nodes first appeared
    reused = models.BooleanField(default=False)  # a retry took its result over

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "node"], name="node_run_unique"),
        ]
        ordering = ["position"]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.node}"


class RunEvent(models.Model):
    """Every event of a run (engine/events.py), in order; the run's checkpoints live here too."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (run, seq) index leads with the run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events",
                            db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=20)
    ts = models.CharField(max_length=30)  # ISO 8601 as emitted, so replays are byte-equal
    scope = models.CharField(max_length=64, null=True, blank=True)
    item = models.PositiveIntegerField(null=True, blank=True)
    data = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="run_event_seq_unique"),
        ]
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"

    def envelope(self) -> Event:
        return envelope(self.seq, self.type, self.ts, str(self.run_id), self.data, self.scope,
                        self.item)


class Worker(models.Model):
    """A process that executes runs, known by its heartbeat. When the heartbeat stops (the
    process died), other processes take its runs over without waiting out their leases
    (flows/services/lifecycle.py, docs/platform.md "Recovery")."""

    name = models.CharField(max_length=100, primary_key=True)  # Run.lease_owner of its runs
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(db_index=True)
    live_runs = models.PositiveIntegerField(default=0)  # executing there at the last beat
    # Since the process started, as of its last beat (the /metrics of every serving process
    # reports them per worker: a Celery worker serves no HTTP of its own).
    doorbells_dropped = models.PositiveBigIntegerField(default=0)
    sweep_found = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-heartbeat_at"]

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """An integration's key: shown once, stored as a SHA-256 hash, revocable, may expire."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


from flows.models.audit import AuditEntry  # noqa: E402  (they name Flow, Run)
from flows.models.triggers import Schedule, Secret, Webhook  # noqa: E402

__all__ = ["ApiToken", "AuditEntry", "Document", "Flow", "FlowVersion", "NodeRun", "Run",
           "RunEvent", "Schedule", "Secret", "Webhook", "Worker"]
