"""The management commands: demo, create_token, run_flow, recover_runs, prune_runs."""

import hashlib
import io
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from flows import services
from flows.execution.executor import executor
from flows.management.commands.run_flow import parse_inputs
from flows.models import ApiToken, Document, Flow, FlowVersion, NodeRun, Run, RunEvent
from flows.services.documents import store_document
from tests.processes import environment_for_another_process

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
SAMPLE_SLUGS = {"approval", "batch", "fanout", "greet-team", "hello", "resilient", "router"}


def sample(name):
    return json.loads((SAMPLES / f"{name}.json").read_text())


def command(*args, **options):
    """stdout of a command run in this process."""
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def refused(*args):
    """The CommandError a command raises, with what it printed before."""
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(*args, stdout=out, stderr=io.StringIO())
    return raised.value, out.getvalue()


def manage(*args):
    """A command in its own process, on the test database: (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT,
                          env=environment_for_another_process(),
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ada():
    return User.objects.create_user("ada")


@pytest.fixture
def hello(ada):
    flow = services.create_flow(ada, sample("hello"), slug="hello")
    services.publish_flow(flow)
    return flow


# -- demo ----------------------------------------------------------------------------------------


def printed_password(output):
    lines = output.splitlines()
    return lines[next(i for i, line in enumerate(lines) if "password" in line) + 1].strip()


@pytest.mark.django_db
def test_demo_loads_and_publishes_every_sample_for_a_new_admin():
    output = command("demo")

    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert admin.check_password(printed_password(output))
    flows = Flow.objects.filter(owner=admin)
    assert {flow.slug for flow in flows} == SAMPLE_SLUGS
    assert all(flow.published_version == 1 for flow in flows)
    assert FlowVersion.objects.filter(flow__owner=admin).count() == 7
    assert Flow.objects.get(slug="hello").draft == sample("hello")
    assert "http://127.0.0.1:8000/admin/" in output
    assert "http://127.0.0.1:8000/api/docs/" in output


@pytest.mark.django_db
def test_demo_twice_changes_nothing_but_the_password():
    first = printed_password(command("demo"))
    before = {f.slug: (f.updated_at, f.draft_hash, f.published_version)
              for f in Flow.objects.all()}
    counts = (Flow.objects.count(), FlowVersion.objects.count(), Document.objects.count())

    output = command("demo")

    after = {f.slug: (f.updated_at, f.draft_hash, f.published_version)
             for f in Flow.objects.all()}
    assert after == before
    assert (Flow.objects.count(), FlowVersion.objects.count(), Document.objects.count()) == counts
    assert User.objects.filter(username="admin").count() == 1
    second = printed_password(output)
    admin = User.objects.get(username="admin")
    assert second != first
    assert admin.check_password(second) and not admin.check_password(first)
    assert output.count("unchanged, already published as v1") == 7


@pytest.mark.django_db
def test_demo_puts_back_a_draft_that_differs_and_makes_an_existing_admin_superuser():
    User.objects.create_user("admin")
    command("demo")
    hello = Flow.objects.get(slug="hello")
    changed = sample("hello")
    changed["description"] = "Edited by hand."
    services.update_flow(hello, changed)

    output = command("demo")

    hello.refresh_from_db()
    assert hello.draft == sample("hello")
    assert hello.published_version == 1  # the restored draft is version 1 again
    assert "draft updated" in output
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser


# -- create_token --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_token_prints_the_key_last_and_the_key_authenticates(ada):
    output = command("create_token", "ada", "--name", "ci")

    key = output.splitlines()[-1]
    assert key and " " not in key
    user, token = services.user_for_key(key)
    assert user == ada
    assert token.name == "ci" and token.expires_at is None


@pytest.mark.django_db
def test_create_token_stores_only_the_hash_of_the_key(ada):
    key = command("create_token", "ada", "--name", "ci").splitlines()[-1]

    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    stored = [str(value) for value in ApiToken.objects.values().get().values()]
    assert key not in stored
    assert all(key not in value or value == token.prefix for value in stored)


@pytest.mark.django_db
def test_create_token_with_expiry(ada):
    command("create_token", "ada", "--name", "short", "--expires-days", "7")

    token = ApiToken.objects.get()
    assert abs(token.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["0", "99999999", "soon"])
def test_create_token_refuses_an_expiry_it_cannot_store(ada, days):
    error, _ = refused("create_token", "ada", "--name", "far", "--expires-days", days)

    assert "--expires-days" in str(error)
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_create_token_for_an_unknown_user_fails_and_creates_nothing():
    error, output = refused("create_token", "nobody", "--name", "ci")

    assert 'there is no user "nobody"' in str(error)
    assert output == ""
    assert not ApiToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_create_token_in_a_process_exit_codes_and_last_line(ada):
    code, stdout, stderr = manage("create_token", "nobody", "--name", "ci")
    assert code != 0
    assert 'there is no user "nobody"' in stderr
    assert stdout == ""

    code, stdout, stderr = manage("create_token", "ada", "--name", "ci")
    assert code == 0, stderr
    assert services.user_for_key(stdout.splitlines()[-1])[0] == ada


# -- run_flow ------------------------------------------------------------------------------------


def summary(output):
    return json.loads(output.splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_run_flow_prints_the_events_and_the_greeting(hello):
    output = command("run_flow", "hello", "--input", "name=Ada", "--user", "ada")

    run = Run.objects.get()
    assert run.status == "succeeded"
    lines = output.splitlines()
    event_lines = [line for line in lines if line.startswith(" ") and "[" in line]
    types = [line.split()[2] for line in event_lines]
    assert types == [event.type for event in RunEvent.objects.filter(run=run)]
    assert types[0] == "run.started" and types[-1] == "run.finished"
    assert event_lines[-1].split()[0] == "[3/3]"
    assert any("greet" in line and "Hello, Ada!" in line for line in event_lines)
    assert summary(output) == {"run": str(run.pk), "status": "succeeded",
                               "outputs": {"greeting": "Hello, Ada!"}}


@pytest.mark.django_db(transaction=True)
def test_run_flow_runs_as_the_only_superuser_by_default():
    boss = User.objects.create_superuser("boss", "", "pw")
    services.create_flow(boss, sample("hello"), slug="hello")

    output = command("run_flow", "hello", "--input", "name=Lin", "--version", "draft")

    assert summary(output)["outputs"] == {"greeting": "Hello, Lin!"}
    assert Run.objects.get().owner == boss


def test_input_values_are_json_when_they_parse_else_strings():
    assert parse_inputs(["n=3", "name=Ada", 'tags=["a"]', "ok=true", "x=null", "ratio=2.5",
                         "text=a=b", "empty=", "nan=NaN", 'quoted="3"']) == {
        "n": 3, "name": "Ada", "tags": ["a"], "ok": True, "x": None, "ratio": 2.5,
        "text": "a=b", "empty": "", "nan": "NaN", "quoted": "3"}


@pytest.mark.django_db(transaction=True)
def test_run_flow_passes_typed_inputs(ada):
    services.create_flow(ada, {
        "dsl": "astron/v1", "name": "Typed",
        "nodes": [
            {"id": "start", "type": "start", "params": {"inputs": {
                "n": {"type": "integer", "required": True},
                "tags": {"type": "array", "items": {"type": "string"}, "required": True},
                "name": {"type": "string", "required": True}}}},
            {"id": "end", "type": "end", "inputs": {
                "n": "{{start.n}}", "tags": "{{start.tags}}", "name": "{{start.name}}"}},
        ],
        "edges": [{"from": "start", "to": "end"}],
    }, slug="typed")

    output = command("run_flow", "typed", "--user", "ada", "--input", "n=3",
                     "--input", 'tags=["a"]', "--input", "name=Ada")

    assert summary(output)["outputs"] == {"n": 3, "tags": ["a"], "name": "Ada"}


@pytest.mark.django_db(transaction=True)
def test_run_flow_with_invalid_inputs_exits_2_and_creates_nothing(hello):
    documents = Document.objects.count()
    error, _ = refused("run_flow", "hello", "--user", "ada", "--input", "name=3")
    assert error.returncode == 2
    assert "/name" in str(error)

    code, _, stderr = manage("run_flow", "hello", "--user", "ada")
    assert code == 2
    assert "/name" in stderr and "required" in stderr

    assert not Run.objects.exists()
    assert Document.objects.count() == documents


@pytest.mark.django_db(transaction=True)
def test_run_flow_bad_arguments_exit_2(hello):
    for args in (["nope", "--user", "ada"], ["hello", "--user", "nobody"],
                 ["hello", "--user", "ada", "--input", "name"],
                 ["hello", "--user", "ada", "--version", "9", "--input", "name=A"],
                 ["hello", "--user", "ada", "--version", "latest", "--input", "name=A"]):
        error, _ = refused("run_flow", *args)
        assert error.returncode == 2, (args, error)
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_run_flow_in_a_process_exits_0_when_the_run_succeeds(hello):
    code, stdout, stderr = manage("run_flow", "hello", "--user", "ada", "--input", "name=Ada")

    assert code == 0, stderr
    assert summary(stdout)["outputs"] == {"greeting": "Hello, Ada!"}


@pytest.mark.django_db(transaction=True)
def test_run_flow_exits_1_when_the_run_fails(ada):
    services.create_flow(ada, {
        "dsl": "astron/v1", "name": "Broken",
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "call", "type": "subflow", "params": {"flow": "missing"}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "call"}, {"from": "call", "to": "end"}],
    }, slug="broken")

    error, output = refused("run_flow", "broken", "--user", "ada")

    assert error.returncode == 1
    assert summary(output)["status"] == "failed"
    assert summary(output)["error"]["code"] == "not_published"


@pytest.mark.django_db(transaction=True)
def test_run_flow_exits_3_with_the_question_when_the_run_waits(ada):
    services.create_flow(ada, sample("approval"), slug="approval")

    error, output = refused("run_flow", "approval", "--user", "ada", "--input", "request=refund")

    run = Run.objects.get()
    assert error.returncode == 3
    assert run.status == "waiting"
    assert "Send this reply?" in output
    assert f"/api/runs/{run.pk}/answer/" in output
    assert summary(output)["status"] == "waiting"


@pytest.mark.django_db(transaction=True)
def test_run_flow_greet_team_after_demo_calls_hello_as_a_subflow():
    command("demo")

    output = command("run_flow", "greet-team", "--input", 'members=["Ada","Lin"]')

    assert summary(output)["outputs"] == {
        "lines": [{"line": "Hello, Ada!"}, {"line": "Hello, Lin!"}]}
    parent = Run.objects.get(parent_run__isnull=True)
    assert parent.children.count() == 2


# -- recover_runs --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_recover_runs_with_nothing_to_do():
    assert "No run needed a worker." in command("recover_runs")


@pytest.mark.django_db(transaction=True)
def test_recover_runs_executes_a_run_no_worker_picked_up(hello):
    run = Run.objects.create(owner=hello.owner, flow=hello, document=store_document(hello.draft),
                             inputs={"name": "Ada"})
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    output = command("recover_runs")

    run.refresh_from_db()
    assert run.status == "succeeded" and run.outputs == {"greeting": "Hello, Ada!"}
    assert "Took over 1 run." in output
    assert "1 succeeded" in output


def question_then_pause():
    return {
        "dsl": "astron/v1", "name": "Ask then pause",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "ask", "type": "question", "params": {"question": "Go on?"}},
            {"id": "pause", "type": "wait", "params": {"seconds": 1.5}},
            {"id": "end", "type": "end", "inputs": {"said": "{{ask.answer}}"}},
        ],
        "edges": [{"from": "start", "to": "ask"}, {"from": "ask", "to": "pause"},
                  {"from": "pause", "to": "end"}],
    }


@pytest.mark.django_db(transaction=True)
def test_recover_runs_takes_over_an_answered_run_whose_worker_died(ada):
    flow = services.create_flow(ada, question_then_pause())
    run, _ = services.start_run(ada, flow, {})
    executor.wait(run.pk, 10)
    assert Run.objects.get(pk=run.pk).status == "waiting"
    services.answer_run(run, "yes please")
    deadline = time.monotonic() + 10
    while not RunEvent.objects.filter(run=run, type="node.started", data__node="pause").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    executor.stop()  # the worker dies while the resumed run executes
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    output = command("recover_runs")

    run.refresh_from_db()
    assert "Took over 1 run." in output
    assert run.status == "succeeded", run.error
    assert run.outputs == {"said": "yes please"}


# -- prune_runs ----------------------------------------------------------------------------------


def make_run(flow, status, days_old):
    run = Run.objects.create(owner=flow.owner, flow=flow, document=store_document(flow.draft),
                             status=status)
    RunEvent.objects.create(run=run, seq=1, type="run.started", ts="2026-01-01T00:00:00Z",
                            data={})
    NodeRun.objects.create(run=run, node="start", type="start", status="succeeded")
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(days=days_old))
    return run


@pytest.fixture
def runs(hello):
    old_finished = [make_run(hello, status, 40)
                    for status in ("succeeded", "failed", "cancelled", "succeeded", "failed")]
    kept = [make_run(hello, "succeeded", 5)]
    kept += [make_run(hello, status, 40) for status in ("queued", "running", "waiting")]
    return old_finished, kept


@pytest.mark.django_db
def test_prune_runs_deletes_only_old_finished_runs_in_batches(runs):
    old_finished, kept = runs

    output = command("prune_runs", "--older-than", "30", "--batch-size", "2")

    assert set(Run.objects.values_list("pk", flat=True)) == {run.pk for run in kept}
    assert not RunEvent.objects.filter(run_id__in=[run.pk for run in old_finished]).exists()
    assert not NodeRun.objects.filter(run_id__in=[run.pk for run in old_finished]).exists()
    assert RunEvent.objects.count() == NodeRun.objects.count() == len(kept)
    assert [line.split()[1] for line in output.splitlines() if "so far" in line] == \
        ["2", "4", "5"]
    assert "Deleted 5 finished runs" in output


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["inf", "nan", "1e9", "-1"])
def test_prune_runs_refuses_an_age_that_is_not_a_number_of_days(runs, days):
    error, _ = refused("prune_runs", "--older-than", days)

    assert "--older-than must be a number of days" in str(error)
    assert Run.objects.count() == 9


@pytest.mark.django_db
def test_prune_runs_dry_run_deletes_nothing(runs):
    output = command("prune_runs", "--older-than", "30", "--dry-run")

    assert "Would delete 5 finished runs" in output
    assert Run.objects.count() == 9 and RunEvent.objects.count() == 9


@pytest.mark.django_db
def test_prune_runs_service_reports_progress_per_batch(runs):
    progress = []

    deleted = services.prune_runs(30, batch_size=3, progress=progress.append)

    assert deleted == 5
    assert progress == [3, 5]
    assert services.prune_runs(30, batch_size=3) == 0


@pytest.mark.django_db
def test_prune_runs_keeps_idempotency_keys_a_day_whatever_the_age_asked(hello):
    """docs/api.md: keys are kept at least 24 hours, so a repeat still finds its run."""
    keyed = make_run(hello, "succeeded", 0.5)
    Run.objects.filter(pk=keyed.pk).update(idempotency_key="order-17")
    unkeyed = make_run(hello, "succeeded", 0.5)
    old_keyed = make_run(hello, "succeeded", 2)
    Run.objects.filter(pk=old_keyed.pk).update(idempotency_key="order-3")

    assert services.prune_runs(0.25) == 2

    assert list(Run.objects.values_list("pk", flat=True)) == [keyed.pk]
    assert not Run.objects.filter(pk__in=[unkeyed.pk, old_keyed.pk]).exists()


@pytest.mark.django_db
def test_prune_runs_keeps_a_finished_run_whose_child_is_still_active(hello):
    parent = make_run(hello, "failed", 40)
    child = make_run(hello, "running", 40)
    Run.objects.filter(pk=child.pk).update(parent_run=parent)

    assert services.prune_runs(30) == 0
    assert Run.objects.count() == 2
