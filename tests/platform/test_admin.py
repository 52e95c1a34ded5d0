"""The admin: every page loads, the runs list stays cheap on a huge table, and every change it
makes (import, edit, publish, run, cancel, tokens) goes through the services."""

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse
from django.utils import timezone

from astron import urls as project_urls
from engine import document_digest
from flows import services
from flows.models import ApiToken, Document, Flow, FlowVersion, NodeRun, Run
from flows.services.tokens import hash_key

from .factories import sample


@pytest.fixture
def flow(owner):
    return services.create_flow(owner, sample("hello"))


def make_runs(flow, count, status=Run.Status.SUCCEEDED):
    """Stored runs of the flow's draft, as executed runs leave them (not executed here)."""
    document = Document.objects.get_or_create(hash=flow.draft_hash,
                                              defaults={"dsl": flow.draft})[0]
    return Run.objects.bulk_create(
        Run(owner=flow.owner, flow=flow, document=document, status=status,
            inputs={"name": f"n{i}"}, outputs={"greeting": f"Hello, n{i}!"}, elapsed_ms=1.5)
        for i in range(count))


def upload(dsl, name="flow.json"):
    content = dsl if isinstance(dsl, bytes) else json.dumps(dsl).encode()
    return SimpleUploadedFile(name, content, content_type="application/json")


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


# -- every page loads ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_index_says_astron(staff_client):
    response = staff_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert b"Astron" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["flow", "flowversion", "run", "apitoken"])
def test_each_changelist_loads(staff_client, flow, model):
    services.publish_flow(flow)
    make_runs(flow, 3)
    services.create_token(flow.owner, "ci")

    response = staff_client.get(reverse(f"admin:flows_{model}_changelist"))

    assert response.status_code == 200


@pytest.mark.django_db
def test_the_workers_page_tells_the_live_from_the_gone(staff_client):
    from datetime import timedelta

    from django.utils import timezone

    from flows.models import Worker

    Worker.objects.create(name="test-worker-alive", heartbeat_at=timezone.now(), live_runs=3)
    Worker.objects.create(name="test-worker-gone", heartbeat_at=timezone.now() - timedelta(minutes=1))

    response = staff_client.get(reverse("admin:flows_worker_changelist"))

    assert response.status_code == 200
    rows = [row for row in response.content.decode().split("<tr") if "test-worker-" in row]
    assert len(rows) == 2
    alive = next(row for row in rows if "test-worker-alive" in row)
    gone = next(row for row in rows if "test-worker-gone" in row)
    assert "icon-yes" in alive and "icon-no" in gone


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "query", "found"), [
    ("run", "?status__exact=succeeded", 2),
    ("run", "?status__exact=failed", 0),
    ("run", "?created=hour", 2),
    ("run", "?q=hello", 2),
    ("run", "?q=hell", 0),  # exact slugs only: a substring search would scan the table
    ("flow", "?deleted=no&published=yes", 1),
    ("flow", "?published=no", 0),
    ("flow", "?q=ada", 1),
    ("flowversion", "?q=hello", 1),
    ("apitoken", "?state=active", 1),
    ("apitoken", "?state=revoked", 0),
])
def test_filtered_changelists_find_what_they_should(staff_client, flow, model, query, found):
    services.publish_flow(flow)
    make_runs(flow, 2)
    services.create_token(flow.owner, "ci")

    response = staff_client.get(reverse(f"admin:flows_{model}_changelist") + query)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == found


@pytest.mark.django_db
def test_a_run_is_found_by_its_id(staff_client, flow):
    first, _ = make_runs(flow, 2)

    response = staff_client.get(reverse("admin:flows_run_changelist") + f"?q={first.pk}")

    assert [run.pk for run in response.context["cl"].result_list] == [first.pk]


# -- runs: a huge table ----------------------------------------------------------------------


def run_list_queries(client, query=""):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:flows_run_changelist") + query)
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "?status__exact=succeeded&created=day", "?flow={flow}"])
def test_the_runs_list_never_counts_and_costs_the_same_for_5_or_50_runs(staff_client, flow,
                                                                       query):
    query = query.format(flow=flow.pk)
    make_runs(flow, 5)
    few_response, few = run_list_queries(staff_client, query)
    make_runs(flow, 45)
    many_response, many = run_list_queries(staff_client, query)

    for sql in few + many:
        assert not ("COUNT(" in sql.upper() and '"flows_run"' in sql), sql
    # The session, the user, the flow filter's two (recent runs' flows, their slugs), the page.
    assert len(few) == len(many) == 5
    assert len(few_response.context["cl"].result_list) == 5
    assert len(many_response.context["cl"].result_list) == 50


@pytest.mark.django_db
def test_the_runs_list_pages_without_counting(staff_client, flow):
    make_runs(flow, 120)

    first, first_queries = run_list_queries(staff_client)
    third, third_queries = run_list_queries(staff_client, "?p=3")

    assert len(first.context["cl"].result_list) == 50
    assert "Older" in first.content.decode()
    assert len(third.context["cl"].result_list) == 20
    assert "Older" not in third.content.decode() and "Newer" in third.content.decode()
    assert not any("COUNT(" in sql.upper() for sql in first_queries + third_queries)


@pytest.mark.django_db
def test_the_runs_list_reads_no_large_columns(staff_client, flow):
    make_runs(flow, 3)

    _, queries = run_list_queries(staff_client)

    listing = [sql for sql in queries if 'FROM "flows_run"' in sql and "LIMIT 51" in sql]
    assert len(listing) == 1
    for column in ('"flows_run"."inputs"', '"flows_run"."outputs"', '"flows_flow"."draft"'):
        assert column not in listing[0]


@pytest.mark.django_db
def test_a_run_page_shows_its_data_as_pretty_json_and_its_node_runs(staff_client, flow):
    run = make_runs(flow, 1)[0]
    NodeRun.objects.create(run=run, node="greet", type="template", status="succeeded",
                           attempts=1, outputs={"text": "<b>Hello</b>"}, position=1)
    NodeRun.objects.create(run=run, node="start", type="start", status="succeeded",
                           attempts=1, position=0)

    response = staff_client.get(reverse("admin:flows_run_change", args=[run.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert '{\n  &quot;name&quot;: &quot;n0&quot;\n}' in page
    assert "&lt;b&gt;Hello&lt;/b&gt;" in page and "<b>Hello</b>" not in page
    assert page.index(">start<") < page.index(">greet<")
    assert 'name="_save"' not in page


@pytest.mark.django_db
def test_runs_cannot_be_added_or_edited_in_the_admin(staff_client, flow):
    run = make_runs(flow, 1)[0]

    assert staff_client.get(reverse("admin:flows_run_add")).status_code == 403
    response = staff_client.post(reverse("admin:flows_run_change", args=[run.pk]),
                                 {"status": "failed"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == "succeeded"


# -- flows -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_import_page_is_a_form_a_browser_can_upload_a_file_with(staff_client):
    page = staff_client.get(reverse("admin:flows_flow_import")).content.decode()

    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page
    assert 'value="Import"' in page


@pytest.mark.django_db
def test_the_token_page_says_the_key_is_shown_once(staff_client):
    page = staff_client.get(reverse("admin:flows_apitoken_add")).content.decode()

    assert "shown once" in page and 'value="Create the token"' in page
    assert "enctype" not in page  # nothing to upload


@pytest.mark.django_db
def test_importing_a_valid_file_creates_the_flow(staff_client, owner):
    response = staff_client.post(reverse("admin:flows_flow_import"),
                                 {"file": upload(sample("approval")), "owner": "ada",
                                  "slug": "approve"})

    flow = Flow.objects.get(owner=owner, slug="approve")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:flows_flow_change", args=[flow.pk])
    assert flow.name == "Approval"


@pytest.mark.django_db
def test_importing_an_invalid_file_lists_each_problem_and_creates_nothing(staff_client, owner):
    dsl = sample("hello")
    dsl["nodes"][1]["type"] = "teleport"
    dsl["edges"].append({"from": "greet", "to": "nowhere"})

    response = staff_client.post(reverse("admin:flows_flow_import"),
                                 {"file": upload(dsl), "owner": "ada"})

    assert response.status_code == 200
    shown = messages_of(response)
    assert any("/nodes/1/type" in m and "unknown_type" in m for m in shown), shown
    assert any(m.startswith("/edges/2") for m in shown), shown
    assert not Flow.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("content", [b'{"name": "a\\u0000b"}', b'{"name": "\\ud800"}',
                                     b"[" * 100_000])
def test_importing_json_no_database_can_store_is_a_form_error(staff_client, owner, content):
    response = staff_client.post(reverse("admin:flows_flow_import"),
                                 {"file": upload(content), "owner": "ada"})

    assert response.status_code == 200
    assert "the file is not JSON" in response.content.decode()
    assert not Flow.objects.exists()


@pytest.mark.django_db
def test_importing_a_file_that_is_not_json_is_a_form_error(staff_client, owner):
    response = staff_client.post(reverse("admin:flows_flow_import"),
                                 {"file": upload(b"{nope"), "owner": "ada"})

    assert response.status_code == 200
    assert "the file is not JSON" in response.content.decode()
    assert not Flow.objects.exists()


@pytest.mark.django_db
def test_a_flow_page_shows_the_draft_and_says_it_is_valid(staff_client, flow):
    response = staff_client.get(reverse("admin:flows_flow_change", args=[flow.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert '<pre class="astron-json">{\n  &quot;dsl&quot;: &quot;astron/v1&quot;' in page
    assert "None: the draft is valid." in page


@pytest.mark.django_db
def test_editing_the_draft_checks_it_and_saves_through_the_service(staff_client, flow):
    url = reverse("admin:flows_flow_change", args=[flow.pk])
    broken = {**flow.draft, "nodes": flow.draft["nodes"][1:]}

    refused = staff_client.post(url, {"draft": json.dumps(broken)})

    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors["draft"]
    assert "/nodes — missing_start: the graph needs a start node" in errors
    assert '/edges/0/from — unknown_node: there is no node "start"' in errors
    flow.refresh_from_db()
    assert len(flow.draft["nodes"]) == 3

    renamed = {**flow.draft, "name": "Hello again"}
    accepted = staff_client.post(url, {"draft": json.dumps(renamed)})

    assert accepted.status_code == 302
    flow.refresh_from_db()
    assert (flow.name, flow.draft) == ("Hello again", renamed)
    assert flow.draft_hash == document_digest(renamed)


@pytest.mark.django_db
def test_publishing_creates_a_version_once(staff_client, flow):
    url = reverse("admin:flows_flow_publish", args=[flow.pk])

    first = staff_client.post(url, follow=True)
    again = staff_client.post(url, follow=True)

    assert FlowVersion.objects.filter(flow=flow).count() == 1
    flow.refresh_from_db()
    assert flow.published_version == 1
    assert any("published version 1" in m for m in messages_of(first))
    assert any("unchanged" in m for m in messages_of(again))
    assert staff_client.get(url).status_code == 405


@pytest.mark.django_db
def test_the_publish_action_publishes_each_selected_flow(staff_client, flow, owner):
    other = services.create_flow(owner, sample("approval"))

    staff_client.post(reverse("admin:flows_flow_changelist"),
                      {"action": "publish_drafts", "_selected_action": [flow.pk, other.pk]})

    assert set(FlowVersion.objects.values_list("flow__slug", "number")) == {
        ("hello", 1), ("approval", 1)}


@pytest.mark.django_db
def test_exporting_downloads_the_draft(staff_client, flow):
    response = staff_client.get(reverse("admin:flows_flow_export", args=[flow.pk]))

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="hello.json"'
    assert json.loads(response.content) == sample("hello")


@pytest.mark.django_db
def test_the_validate_action_reports_each_flow(staff_client, flow):
    response = staff_client.post(reverse("admin:flows_flow_changelist"),
                                 {"action": "validate_drafts", "_selected_action": [flow.pk]},
                                 follow=True)

    assert "hello: the draft is valid." in messages_of(response)


@pytest.mark.django_db
def test_deleting_a_flow_is_soft_and_keeps_its_runs(staff_client, flow):
    make_runs(flow, 2)

    staff_client.post(reverse("admin:flows_flow_changelist"),
                      {"action": "delete_flows", "_selected_action": [flow.pk]})

    flow.refresh_from_db()
    assert flow.is_deleted
    assert Run.objects.filter(flow=flow).count() == 2


@pytest.mark.django_db
def test_a_deleted_flow_is_shown_but_not_edited_published_or_run(staff_client, flow):
    services.delete_flow(flow)
    page = staff_client.get(reverse("admin:flows_flow_change", args=[flow.pk]))

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert staff_client.post(reverse("admin:flows_flow_publish", args=[flow.pk])).status_code \
        == 403
    run = staff_client.post(reverse("admin:flows_flow_run", args=[flow.pk]),
                            {"inputs": '{"name": "Ada"}', "version": "draft"})
    assert "A deleted flow cannot be run." in run.content.decode()
    assert not FlowVersion.objects.exists() and not Run.objects.exists()


@pytest.mark.django_db
def test_importing_under_a_taken_slug_says_so_and_creates_nothing(staff_client, flow):
    response = staff_client.post(reverse("admin:flows_flow_import"),
                                 {"file": upload(sample("approval")), "owner": "ada",
                                  "slug": "hello"})

    assert response.status_code == 200
    assert 'the slug "hello" is taken' in messages_of(response)
    assert list(Flow.objects.values_list("slug", flat=True)) == ["hello"]


# -- running from the admin ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_running_with_inputs_starts_a_run_and_opens_its_page(staff_client, owner,
                                                             stopped_executor):
    flow = services.create_flow(owner, sample("hello"))

    response = staff_client.post(reverse("admin:flows_flow_run", args=[flow.pk]),
                                 {"inputs": '{"name": "Ada"}', "version": "draft"})

    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] in (f"/runs/{run.pk}/",
                                    reverse("admin:flows_run_change", args=[run.pk]))
    assert (run.owner, run.flow, run.version_label) == (owner, flow, "draft")
    stopped_executor.wait(run.pk, 10)
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.outputs == {"greeting": "Hello, Ada!"}


@pytest.mark.django_db
def test_the_run_form_offers_the_start_inputs(staff_client, flow):
    response = staff_client.get(reverse("admin:flows_flow_run", args=[flow.pk]))

    assert response.status_code == 200
    assert "&quot;required&quot;: true" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(("inputs", "version", "field", "says"), [
    ('{"name": 7}', "draft", "inputs", "/name — invalid_inputs"),
    ("{}", "draft", "inputs", 'the input "name" is required'),
    ("[1]", "draft", "inputs", "must be a JSON object"),
    ("{nope", "draft", "inputs", "Enter a valid JSON"),
    ('{"name": "Ada"}', "published", "version", "has no published version"),
])
def test_invalid_run_requests_show_errors_and_create_nothing(staff_client, flow, inputs,
                                                             version, field, says):
    documents = Document.objects.count()

    response = staff_client.post(reverse("admin:flows_flow_run", args=[flow.pk]),
                                 {"inputs": inputs, "version": version})

    assert response.status_code == 200
    assert any(says in error for error in response.context["form"].errors[field])
    assert not Run.objects.exists()
    assert Document.objects.count() == documents


def live_page(request, run_id):
    return HttpResponse("the live page")


# The project with a live run page, for the tests marked `pytest.mark.urls(__name__)`.
urlpatterns = [path("runs/<uuid:run_id>/", live_page), *project_urls.urlpatterns]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_running_opens_the_live_page_when_the_project_serves_one(staff_client, flow):
    response = staff_client.post(reverse("admin:flows_flow_run", args=[flow.pk]),
                                 {"inputs": '{"name": "Ada"}', "version": "draft"})

    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    page = staff_client.get(reverse("admin:flows_run_change", args=[run.pk]))
    assert f'<a href="/runs/{run.pk}/">' in page.content.decode()


# -- cancelling ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_cancel_action_stops_a_waiting_run_and_skips_finished_ones(staff_client, owner,
                                                                       stopped_executor):
    flow = services.create_flow(owner, sample("approval"))
    waiting, _ = services.start_run(owner, flow, {"request": "refund"}, version="draft")
    stopped_executor.wait(waiting.pk, 10)
    waiting.refresh_from_db()
    assert waiting.status == "waiting"
    finished = make_runs(flow, 1)[0]

    response = staff_client.post(reverse("admin:flows_run_changelist"),
                                 {"action": "cancel_runs",
                                  "_selected_action": [waiting.pk, finished.pk]},
                                 follow=True)

    shown = messages_of(response)
    assert "Asked 1 run(s) to stop." in shown
    assert any(m.startswith("Skipped 1 finished run(s)") and str(finished.pk) in m
               for m in shown), shown
    waiting.refresh_from_db()
    assert waiting.cancel_requested
    stopped_executor.wait(waiting.pk, 10)
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"
    finished.refresh_from_db()
    assert finished.status == "succeeded" and not finished.cancel_requested


@pytest.mark.django_db(transaction=True)
def test_the_cancel_button_of_a_run_stops_it_and_a_finished_run_says_why_not(
        staff_client, owner, stopped_executor):
    flow = services.create_flow(owner, sample("approval"))
    waiting, _ = services.start_run(owner, flow, {"request": "refund"}, version="draft")
    stopped_executor.wait(waiting.pk, 10)
    finished = make_runs(flow, 1)[0]

    stopped = staff_client.post(reverse("admin:flows_run_cancel", args=[waiting.pk]),
                                follow=True)
    refused = staff_client.post(reverse("admin:flows_run_cancel", args=[finished.pk]),
                                follow=True)

    assert "Asked the run to stop." in messages_of(stopped)
    stopped_executor.wait(waiting.pk, 10)
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"
    assert messages_of(refused) == ["the run already succeeded"]
    finished.refresh_from_db()
    assert finished.status == "succeeded"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["99999999999999999999", "-1", "x"])
def test_a_flow_filter_no_flow_can_match_lists_nothing_instead_of_failing(staff_client, flow,
                                                                         value):
    make_runs(flow, 2)

    response = staff_client.get(reverse("admin:flows_run_changelist"), {"flow": value})

    assert response.status_code == 200


# -- versions are read-only ------------------------------------------------------------------


@pytest.mark.django_db
def test_versions_can_be_seen_but_not_changed(staff_client, flow):
    version, _ = services.publish_flow(flow)
    url = reverse("admin:flows_flowversion_change", args=[version.pk])

    page = staff_client.get(url)
    post = staff_client.post(url, {"number": 9})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert version.hash in page.content.decode()
    assert post.status_code == 403
    assert staff_client.get(reverse("admin:flows_flowversion_add")).status_code == 403
    assert staff_client.get(reverse("admin:flows_flowversion_delete",
                                    args=[version.pk])).status_code == 403
    version.refresh_from_db()
    assert version.number == 1


# -- API tokens ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_adding_a_token_shows_its_key_once_and_stores_only_its_hash(staff_client, owner):
    response = staff_client.post(reverse("admin:flows_apitoken_add"),
                                 {"user": "ada", "name": "ci", "expires_days": "30"})

    assert response.status_code == 200
    key = response.context["key"]
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.key_hash) == (owner, "ci", hash_key(key))
    assert key in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    stored = [json.dumps(row, default=str) for row in ApiToken.objects.values()]
    assert not any(key in row for row in stored)
    assert services.user_for_key(key)[0] == owner
    later = staff_client.get(reverse("admin:flows_apitoken_change", args=[token.pk]))
    listing = staff_client.get(reverse("admin:flows_apitoken_changelist"))
    for page in (later, listing):
        assert key not in page.content.decode()
        assert token.key_hash not in page.content.decode()


@pytest.mark.django_db
def test_a_token_for_an_unknown_user_is_a_form_error(staff_client):
    response = staff_client.post(reverse("admin:flows_apitoken_add"),
                                 {"user": "nobody", "name": "ci"})

    assert response.status_code == 200
    assert response.context["form"].errors["user"] == ['there is no user "nobody"']
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_the_revoke_action_revokes_the_selected_tokens(staff_client, owner):
    token, key = services.create_token(owner, "ci")
    kept, _ = services.create_token(owner, "other")

    staff_client.post(reverse("admin:flows_apitoken_changelist"),
                      {"action": "revoke_tokens", "_selected_action": [token.pk]})

    token.refresh_from_db()
    kept.refresh_from_db()
    assert token.revoked_at is not None
    assert kept.revoked_at is None
    assert services.user_for_key(key) is None


@pytest.mark.django_db
def test_tokens_cannot_be_edited(staff_client, owner):
    token, _ = services.create_token(owner, "ci")

    response = staff_client.post(reverse("admin:flows_apitoken_change", args=[token.pk]),
                                 {"name": "renamed", "key_hash": "0" * 64})

    assert response.status_code == 403
    token.refresh_from_db()
    assert token.name == "ci"


@pytest.mark.django_db
def test_the_runs_list_and_page_show_who_executes_a_run_and_until_when(staff_client, flow):
    executing, queued = make_runs(flow, 2)
    until = timezone.now() + timedelta(seconds=30)
    Run.objects.filter(pk=executing.pk).update(status="running", lease_owner="host:42:abcd",
                                               lease_expires_at=until)
    Run.objects.filter(pk=queued.pk).update(status="queued", lease_owner="")

    listing = staff_client.get(reverse("admin:flows_run_changelist")).content.decode()
    page = staff_client.get(reverse("admin:flows_run_change", args=[executing.pk]))

    shown = f"host:42:abcd (lease until {timezone.localtime(until).strftime('%H:%M:%S')})"
    assert shown in listing and shown in page.content.decode()
    assert "waiting for a worker or a slot" in listing


@pytest.mark.django_db
def test_the_flows_limit_of_runs_at_once_is_edited_on_its_page(staff_client, flow):
    url = reverse("admin:flows_flow_change", args=[flow.pk])
    draft = json.dumps(flow.draft)

    refused = staff_client.post(url, {"draft": draft, "max_active_runs": "0"})
    assert refused.status_code == 200 and "max_active_runs" in refused.context[
        "adminform"].form.errors
    accepted = staff_client.post(url, {"draft": draft, "max_active_runs": "4"})
    assert accepted.status_code == 302
    flow.refresh_from_db()
    assert flow.max_active_runs == 4

    cleared = staff_client.post(url, {"draft": draft, "max_active_runs": ""})
    assert cleared.status_code == 302
    flow.refresh_from_db()
    assert flow.max_active_runs is None
