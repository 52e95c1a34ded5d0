"""Metrics: counted from runs as they execute, served at /metrics to staff, summed up on the
admin dashboard; silk, when switched on, for staff only."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from flows import services
from flows.admin import dashboard
from flows.models import NodeRun, Run
from tests import processes
from tracing import metrics
from tracing.metrics import REGISTRY, HourWindow
from tracing.silk import MIDDLEWARE as SILK_MIDDLEWARE
from tracing.silk import silk_settings, staff_only

from . import factories
from .factories import flow

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def sample_value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def failing_flow():
    """A wait node given a string for seconds: it fails with invalid_param."""
    return {"dsl": "astron/v1", "name": "Nap", "nodes": [
        {"id": "start", "type": "start",
         "params": {"inputs": {"s": {"type": "string", "default": "abc"}}}},
        {"id": "nap", "type": "wait", "params": {"seconds": "{{start.s}}"}},
        {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}]}


@pytest.fixture
def staff_api(staff):
    return factories.api_client(staff)


# -- counted as runs execute -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stopped_executor")
def test_a_run_moves_the_run_node_and_event_counters(api, owner, staff_api):
    flow(owner, "hello", slug="hello")
    services.create_flow(owner, failing_flow(), slug="nap")
    before = {
        "started": sample_value("astron_runs_started_total"),
        "succeeded": sample_value("astron_runs_finished_total", status="succeeded"),
        "failed": sample_value("astron_runs_finished_total", status="failed"),
        "runs timed": sample_value("astron_run_duration_seconds_count", status="succeeded"),
        "templates timed": sample_value("astron_node_duration_seconds_count", type="template"),
        "wait errors": sample_value("astron_node_errors_total", type="wait",
                                    code="invalid_param"),
        "events": sample_value("astron_events_delivered_total"),
    }

    ok = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}, "wait": 10}).json()
    failed = api.post("/api/flows/nap/runs/", {"inputs": {}, "wait": 10}).json()
    assert (ok["status"], failed["status"]) == ("succeeded", "failed")

    assert sample_value("astron_runs_started_total") - before["started"] == 2
    assert sample_value("astron_runs_finished_total", status="succeeded") - \
        before["succeeded"] == 1
    assert sample_value("astron_runs_finished_total", status="failed") - before["failed"] == 1
    assert sample_value("astron_run_duration_seconds_count", status="succeeded") - \
        before["runs timed"] == 1
    assert sample_value("astron_node_duration_seconds_count", type="template") - \
        before["templates timed"] == 1
    assert sample_value("astron_node_errors_total", type="wait", code="invalid_param") - \
        before["wait errors"] == 1
    stored = sum(Run.objects.get(pk=run_id).last_seq for run_id in (ok["id"], failed["id"]))
    deadline = time.monotonic() + 5  # counted once published, just after they are stored
    while sample_value("astron_events_delivered_total") - before["events"] < stored and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert sample_value("astron_events_delivered_total") - before["events"] == stored

    text = staff_api.get("/metrics").content.decode()
    for line in ("# TYPE astron_runs_started_total counter",
                 'astron_runs_finished_total{status="succeeded"}',
                 "# TYPE astron_run_duration_seconds histogram",
                 'astron_node_duration_seconds_bucket{le="0.001",type="template"}',
                 'astron_node_errors_total{code="invalid_param",type="wait"}',
                 "astron_events_delivered_total",
                 "# TYPE astron_cache_hits_total counter"):
        assert line in text, line


# -- /metrics: staff only ----------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_need_credentials(anonymous):
    response = anonymous.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_metrics_refuse_an_unknown_key(anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION="Token ast_nope")
    assert anonymous.get("/metrics").status_code == 401


@pytest.mark.django_db
def test_metrics_are_forbidden_to_a_user_who_is_not_staff(api, client, owner):
    assert api.get("/metrics").status_code == 403
    client.force_login(owner)
    assert client.get("/metrics").status_code == 403


@pytest.mark.django_db
def test_metrics_are_served_to_a_staff_key_in_prometheus_text(staff_api, staff):
    response = staff_api.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == PROMETHEUS_TEXT
    assert "# TYPE astron_runs_started_total counter" in response.content.decode()

    bearer = factories.api_client(staff, scheme="Bearer")  # Prometheus's bearer_token
    assert bearer.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_metrics_are_served_to_a_staff_session(client, staff):
    client.force_login(staff)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")


@pytest.mark.django_db
def test_metrics_serve_a_scraper_that_accepts_only_text(staff_api):
    response = staff_api.get("/metrics", HTTP_ACCEPT="text/plain")
    assert response.status_code == 200
    assert response["Content-Type"] == PROMETHEUS_TEXT
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_metrics_refuse_other_methods_in_the_api_error_shape(staff_api, anonymous):
    response = staff_api.post("/metrics")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    refused = anonymous.get("/metrics", HTTP_ACCEPT="text/plain")
    assert refused.status_code == 401
    assert json.loads(refused.content)["error"]["code"] == "not_authenticated"


# -- the plan cache's counts ---------------------------------------------------------------------


@pytest.fixture
def cache_stats(monkeypatch):
    """flows.cache's counters after some lookups."""
    monkeypatch.setattr(metrics, "_cache_stats_source", lambda: {
        "plan.l1.hit": 7, "plan.l1.miss": 3, "plan.l2.hit": 2, "plan.l2.miss": 1,
        "plan.l3.hit": 1, "plan.l3.miss": 0, "plan.compile": 0, "redis.error": 0,
        "versions.hit": 5, "versions.miss": 2, "flows.absent": 4, "plan.l1.size": 10,
        "redis.available": True})


def test_cache_hits_and_misses_are_read_per_tier(cache_stats):
    assert metrics.cache_figures() == {"l1": {"hits": 7, "misses": 3},
                                       "l2": {"hits": 2, "misses": 1},
                                       "l3": {"hits": 1, "misses": 0},
                                       "versions": {"hits": 5, "misses": 2}}
    text = metrics.metrics_text().decode()
    assert 'astron_cache_hits_total{tier="l1"} 7.0' in text
    assert 'astron_cache_misses_total{tier="l2"} 1.0' in text
    assert 'astron_cache_events_total{name="flows.absent"} 4.0' in text
    assert "astron_cache_l1_plans 10.0" in text
    assert "astron_cache_redis_available 1.0" in text


def test_other_shapes_of_cache_stats_and_no_source(monkeypatch):
    assert metrics.cache_figures({"l1": {"hits": 4, "misses": 1}}) == {
        "l1": {"hits": 4, "misses": 1}}
    monkeypatch.setattr(metrics, "_cache_stats_source", None)
    assert metrics.cache_figures() == {}
    assert "astron_cache_hits_total{" not in metrics.metrics_text().decode()
    monkeypatch.setattr(metrics, "_cache_stats_source", lambda: 1 / 0)  # a failing source
    assert metrics.cache_figures() == {}
    assert "astron_cache_hits_total{" not in metrics.metrics_text().decode()


# -- this process's last hour ---------------------------------------------------------------


def test_the_hour_window_counts_from_the_last_snapshot_an_hour_old():
    now = [1000.0]
    counts = {"events": 0}
    window = HourWindow(lambda: dict(counts), clock=lambda: now[0])

    counts["events"] = 5
    assert window.last_hour() == ({"events": 5}, 1000.0)  # a young process: since its start
    for _ in range(90):  # an hour and a half, an event and a tick each minute
        now[0] += 60
        counts["events"] += 1
        window.tick()
    figures, since = window.last_hour()
    assert since == now[0] - 3600
    assert figures == {"events": 60}
    assert len(window._snapshots) <= 62


# -- the dashboard -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_dashboard_shows_the_last_hour_to_staff(client, staff, owner, cache_stats):
    hello = flow(owner, "hello")
    factories.run(owner, hello)  # queued (not committed: never executed)
    done = factories.run(owner, hello)
    Run.objects.filter(pk=done.pk).update(status="succeeded", elapsed_ms=12.5)
    NodeRun.objects.create(run=done, node="greet", type="template", status="succeeded",
                           attempts=1, elapsed_ms=0.25)
    NodeRun.objects.create(run=done, node="fetch", type="http", status="failed", attempts=3,
                           elapsed_ms=900, error={"code": "network_error", "message": "x"})
    client.force_login(staff)

    response = client.get(reverse("astron-dashboard"))

    assert response.status_code == 200
    figures = response.context
    assert figures["runs_started"] == 2
    assert dict(figures["runs_by_status"])["queued"] == 1
    assert dict(figures["runs_by_status"])["succeeded"] == 1
    assert figures["run_latency"] == {"p50": 12.5, "p95": 12.5, "p99": 12.5, "count": 1}
    assert dict(figures["node_latency"])["http"]["p99"] == 900
    assert [(e["type"], e["code"], e["count"]) for e in figures["node_errors"]] == [
        ("http", "network_error", 1)]
    assert dict(figures["cache"])["l1"]["hits"] == 7
    page = response.content.decode()
    assert "network_error" in page and "Runs created in the last hour: 2" in page


@pytest.mark.django_db
def test_the_dashboard_warns_loudly_without_bubblewrap(client, staff, monkeypatch):
    monkeypatch.setattr(dashboard, "sandbox_status", lambda: {
        "isolation": "process", "warning": "bubblewrap (bwrap) is not installed",
        "detail": "process: rlimits only"})
    client.force_login(staff)
    page = client.get(reverse("astron-dashboard")).content.decode()
    assert 'id="sandbox-warning"' in page and "NOT ISOLATED BY BUBBLEWRAP" in page


@pytest.mark.django_db
def test_the_dashboard_is_for_staff_only(client, owner):
    assert client.get("/admin/dashboard/").status_code == 302  # to the admin's login
    client.force_login(owner)
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_the_admin_index_links_to_the_dashboard(client, staff):
    client.force_login(staff)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'href="/admin/dashboard/"' in page and 'href="/metrics"' in page


def test_percentiles_are_nearest_ranks():
    samples = [float(n) for n in range(1, 101)]
    assert dashboard.latency(samples) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "count": 100}
    assert dashboard.latency([]) == {"p50": None, "p95": None, "p99": None, "count": 0}
    assert dashboard.percentile([3.0], 99) == 3.0


# -- silk ------------------------------------------------------------------------------------------


def test_silk_is_off_in_tests(settings):
    assert not settings.SILK
    assert "silk" not in settings.INSTALLED_APPS
    assert SILK_MIDDLEWARE not in settings.MIDDLEWARE


def test_silk_settings_are_staff_only_sampled_and_capped(settings):
    added = silk_settings(settings.INSTALLED_APPS, settings.MIDDLEWARE, 25)
    assert added["INSTALLED_APPS"][-1] == "silk"
    middleware = added["MIDDLEWARE"]
    assert middleware.index(SILK_MIDDLEWARE) == middleware.index(
        "django.contrib.auth.middleware.AuthenticationMiddleware") + 1
    assert added["SILKY_INTERCEPT_PERCENT"] == 25
    assert added["SILKY_AUTHENTICATION"] is True and added["SILKY_AUTHORISATION"] is True
    assert added["SILKY_PERMISSIONS"] is staff_only
    assert added["SILKY_MAX_REQUEST_BODY_SIZE"] == added["SILKY_MAX_RESPONSE_BODY_SIZE"] == 1024
    assert added["SILKY_PYTHON_PROFILER"] is False
    assert staff_only(User(is_staff=True, is_active=True))
    assert not staff_only(User(is_staff=False, is_active=True))
    assert not staff_only(User(is_staff=True, is_active=False))


@pytest.mark.slow
def test_with_silk_on_its_pages_are_for_staff_only(tmp_path):
    """A process started with SILK=true, on a database of its own: /silk/ sends anonymous
    visitors to the login page, refuses users who are not staff, and shows staff."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "PYTEST_")) and k not in ("REDIS_URL",)}
    env.update(SILK="true", SILK_INTERCEPT_PERCENT="100", DATABASE_URL=f"sqlite:///{tmp_path}/s.db",
               SECRET_KEY="silk-test-" * 6, SECRETS_KEY="silk-secrets-" * 3, CODE_WORKERS="0",
               ALLOWED_HOSTS="testserver")
    code = """
import os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'astron.settings'
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.contrib.auth.models import User
from django.test import Client
from silk.models import Request
call_command('migrate', verbosity=0)
assert settings.SILKY_INTERCEPT_PERCENT == 100
client = Client()
anonymous = client.get('/silk/')
assert anonymous.status_code == 302 and '/admin/login/' in anonymous['Location'], anonymous
client.force_login(User.objects.create_user('mallory'))
assert client.get('/silk/').status_code == 403
client.force_login(User.objects.create_user('grace', is_staff=True))
assert client.get('/silk/').status_code == 200
client.get('/api/flows/')  # recorded (100 %), body capped
assert Request.objects.filter(path='/api/flows/').exists()
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")



@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_silk_on_a_nul_in_a_path_or_body_answers_as_it_would_without_silk():
    """Silk stores a recorded request's path and body as text, which PostgreSQL refuses with
    a NUL in it: such requests are not recorded, and answer their own 4xx (they were 500)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "PYTEST_")) and k not in ("REDIS_URL",)}
    env.update(SILK="true", SILK_INTERCEPT_PERCENT="100", DATABASE_URL=processes.test_database_url(),
               SECRET_KEY="silk-test-" * 6, SECRETS_KEY="silk-secrets-" * 3, CODE_WORKERS="0",
               ALLOWED_HOSTS="testserver")
    code = """
import os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'astron.settings'
django.setup()
from django.core.management import call_command
from django.contrib.auth.models import User
from django.test import Client
from silk.models import Request
from flows import services
call_command('migrate', verbosity=0)  # silk's tables, beside the test database's own
_, key = services.create_token(User.objects.create_user('nul'), 'silk')
client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f'Token {key}')
statuses = [client.get('/api/flows/a%00b/').status_code,
            client.post('/api/flows/validate/', data=b'{"dsl": {"name": "a\\x00"}}',
                        content_type='application/json').status_code,
            client.get('/flows/a%00b/').status_code]
assert statuses == [404, 400, 302], statuses
assert client.get('/api/flows/').status_code == 200
assert list(Request.objects.values_list('path', flat=True)) == ['/api/flows/']
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


# -- what the workers report (flows/worker_metrics.py) ---------------------------------------


@pytest.mark.django_db
def test_every_workers_counts_are_served_from_its_heartbeat(staff_api, owner):
    from flows.services import lifecycle

    lifecycle.beat("host:11:aaaa", 3, doorbells_dropped=5, sweep_found=2)
    lifecycle.beat("host:12:bbbb", 0)
    queued = factories.run(owner, flow(owner, "hello"))
    Run.objects.filter(pk=queued.pk).update(lease_owner="")  # queued, taken by no worker yet

    text = staff_api.get("/metrics").content.decode()

    assert 'astron_worker_live_runs{worker="host:11:aaaa"} 3.0' in text
    assert 'astron_worker_doorbells_dropped_total{worker="host:11:aaaa"} 5.0' in text
    assert 'astron_worker_sweep_found_total{worker="host:11:aaaa"} 2.0' in text
    assert 'astron_worker_doorbells_dropped_total{worker="host:12:bbbb"} 0.0' in text
    assert "astron_workers_alive 2.0" in text
    assert "astron_runs_queued_not_executing 1.0" in text


@pytest.mark.django_db
def test_a_heartbeat_stores_what_the_executor_counted(monkeypatch):
    from flows.models import Worker
    from flows.services import lifecycle

    metrics.doorbell_dropped()
    metrics.sweep_found(4)
    counts = metrics.worker_counts()
    lifecycle.beat("host:13:cccc", 1, **counts)

    row = Worker.objects.get(name="host:13:cccc")
    assert (row.doorbells_dropped, row.sweep_found) == (counts["doorbells_dropped"],
                                                        counts["sweep_found"])
    assert row.sweep_found >= 4 and row.doorbells_dropped >= 1
