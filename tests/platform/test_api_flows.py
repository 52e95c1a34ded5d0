"""Flows over the API: create, read, replace, delete, validate, publish, versions, export."""


import pytest

from flows.models import Document, Flow, FlowVersion
from flows.services import flows as flow_services

from .factories import api_client, assert_error, concurrently, flow, no_rows_change, run, sample

pytestmark = pytest.mark.django_db


def test_creating_a_flow_answers_201_with_the_flow(api, owner):
    response = api.post("/api/flows/", {"slug": "hello", "dsl": sample("hello")})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"slug", "name", "description", "dsl", "published_version",
                         "max_active_runs", "created_at", "updated_at"}
    assert body["max_active_runs"] is None  # no limit of its own
    assert body["slug"] == "hello"
    assert body["name"] == "Hello"
    assert body["description"] == "Greets a person by name."
    assert body["dsl"] == sample("hello")
    assert body["published_version"] is None
    assert response["Location"] == "/api/flows/hello/"
    assert Flow.objects.get(owner=owner, slug="hello").draft == sample("hello")


def test_a_slug_is_made_from_the_name_when_none_is_given(api):
    document = sample("hello") | {"name": "Crème brûlée: Ünïcode!"}

    first = api.post("/api/flows/", {"dsl": document}).json()
    second = api.post("/api/flows/", {"dsl": document}).json()
    nothing_left = api.post("/api/flows/", {"dsl": sample("hello") | {"name": "日本"}}).json()

    assert first["slug"] == "creme-brulee-unicode"
    assert second["slug"] == "creme-brulee-unicode-2"
    assert nothing_left["slug"].startswith("flow-") and len(nothing_left["slug"]) == 11


def test_a_slug_taken_while_the_flow_is_created_gets_the_next_suffix(api, owner, monkeypatch):
    """The free slug is chosen, then another request takes it before this one stores its
    flow: docs/api.md promises a numeric suffix, not a 409."""
    choose = flow_services.slug_from_name
    flow(owner, "hello", slug="hello")
    chosen = []

    def raced(who, name):  # what was free when this request looked, taken by now
        chosen.append(name)
        return "hello" if len(chosen) == 1 else choose(who, name)

    monkeypatch.setattr(flow_services, "slug_from_name", raced)

    response = api.post("/api/flows/", {"dsl": sample("hello")})

    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "hello-2"
    assert len(chosen) == 2
    assert sorted(Flow.objects.values_list("slug", flat=True)) == ["hello", "hello-2"]


def test_a_slug_that_stays_taken_ends_in_409_after_a_few_tries(api, owner, monkeypatch):
    flow(owner, "hello", slug="hello")
    chosen = []
    monkeypatch.setattr(flow_services, "slug_from_name",
                        lambda who, name: chosen.append(name) or "hello")

    with no_rows_change():
        response = api.post("/api/flows/", {"dsl": sample("hello")})

    assert_error(response, 409, "slug_taken")
    assert 1 < len(chosen) <= 100


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_without_a_slug_each_get_a_free_one(owner):
    clients = [api_client(owner) for _ in range(8)]

    answers = concurrently(clients, lambda client: client.post(
        "/api/flows/", {"dsl": sample("hello")}))

    assert [response.status_code for response in answers] == [201] * 8, \
        [response.content for response in answers]
    slugs = sorted((response.json()["slug"] for response in answers), key=len)
    assert set(slugs) == {"hello", *(f"hello-{n}" for n in range(2, 9))}
    assert Flow.objects.filter(owner=owner).count() == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_the_same_slug_make_one_flow(owner):
    clients = [api_client(owner) for _ in range(8)]

    answers = concurrently(clients, lambda client: client.post(
        "/api/flows/", {"slug": "hello", "dsl": sample("hello")}))

    assert sorted(response.status_code for response in answers) == [201] + [409] * 7
    for response in answers:
        if response.status_code == 409:
            assert_error(response, 409, "slug_taken")
    assert list(Flow.objects.values_list("slug", flat=True)) == ["hello"]


def test_a_null_slug_means_none_given(api):
    response = api.post("/api/flows/", {"slug": None, "dsl": sample("hello")})

    assert response.status_code == 201
    assert response.json()["slug"] == "hello"


def test_getting_a_flow(api, owner):
    flow(owner, "approval", slug="approval", publish=True)

    body = api.get("/api/flows/approval/").json()

    assert body["slug"] == "approval"
    assert body["name"] == "Approval"
    assert body["published_version"] == 1
    assert body["dsl"] == sample("approval")


def test_the_flow_list_shows_own_flows_newest_first(api, owner, outsider):
    flow(owner, "hello", slug="first")
    flow(owner, "router", slug="second")
    flow(outsider, "hello", slug="theirs")

    body = api.get("/api/flows/").json()

    assert set(body) == {"results", "next", "previous"}
    assert [f["slug"] for f in body["results"]] == ["second", "first"]
    assert body["next"] is None and body["previous"] is None


def test_the_flow_list_filters_by_name_or_slug(api, owner):
    flow(owner, "hello", slug="greeter")  # name "Hello"
    flow(owner, "router", slug="length")  # name "Length router"
    flow(owner, "fanout", slug="fan")

    by_name = api.get("/api/flows/", {"q": "HELL"}).json()["results"]
    by_slug = api.get("/api/flows/", {"q": "lengt"}).json()["results"]
    both = api.get("/api/flows/", {"q": "r"}).json()["results"]

    assert [f["slug"] for f in by_name] == ["greeter"]
    assert [f["slug"] for f in by_slug] == ["length"]
    assert {f["slug"] for f in both} == {"greeter", "length"}


def test_replacing_the_draft(api, owner):
    flow(owner, "hello", slug="hello")
    document = sample("hello") | {"name": "Hello again", "description": "New."}

    response = api.put("/api/flows/hello/", {"dsl": document})

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["dsl"]) == ("Hello again", "New.", document)
    assert Flow.objects.get(slug="hello").draft == document


def test_deleting_a_flow_hides_it_but_keeps_its_runs_and_slug(api, owner):
    hello = flow(owner, "hello", slug="hello")
    kept = run(owner, hello)

    response = api.delete("/api/flows/hello/")

    assert response.status_code == 204
    assert response.content == b""
    assert api.get("/api/flows/").json()["results"] == []
    assert_error(api.get("/api/flows/hello/"), 404, "not_found")
    assert api.get(f"/api/runs/{kept.pk}/").json()["flow"] == "hello"
    assert [r["id"] for r in api.get("/api/runs/").json()["results"]] == [str(kept.pk)]
    with no_rows_change():
        retaken = api.post("/api/flows/", {"slug": "hello", "dsl": sample("hello")})
    assert_error(retaken, 409, "slug_taken")


def test_validating_a_valid_document_stores_nothing(api):
    with no_rows_change():
        response = api.post("/api/flows/validate/", {"dsl": sample("router")})

    assert response.status_code == 200
    assert response.json() == {"valid": True, "errors": []}


def test_validating_an_invalid_document_lists_every_problem(api):
    document = sample("hello")
    document["nodes"][1]["params"]["template"] = "{{nowhere.text}}"
    document["colour"] = "blue"
    documents_before = Document.objects.count()

    with no_rows_change():
        response = api.post("/api/flows/validate/", {"dsl": document})

    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    problems = {(e["path"], e["code"]) for e in body["errors"]}
    assert ("/colour", "unknown_field") in problems
    assert ("/nodes/1/params/template", "unknown_reference") in problems
    assert Document.objects.count() == documents_before


def test_publishing_freezes_the_draft_as_the_next_version(api, owner):
    flow(owner, "hello", slug="hello")

    first = api.post("/api/flows/hello/publish/")
    unchanged = api.post("/api/flows/hello/publish/", {})
    api.put("/api/flows/hello/", {"dsl": sample("hello") | {"name": "Hello 2"}})
    second = api.post("/api/flows/hello/publish/", {})

    assert first.status_code == 201
    assert first.json()["version"] == 1
    assert first.json()["hash"].startswith("sha256:") and len(first.json()["hash"]) == 71
    assert unchanged.status_code == 200
    assert unchanged.json() == first.json()
    assert second.status_code == 201
    assert second.json()["version"] == 2
    assert second.json()["hash"] != first.json()["hash"]
    assert api.get("/api/flows/hello/").json()["published_version"] == 2
    assert FlowVersion.objects.filter(flow__slug="hello").count() == 2


def test_publishing_accepts_an_empty_form_post(owner):
    from django.test import Client

    flow(owner, "hello", slug="hello")
    client = Client()
    client.force_login(owner)

    response = client.post("/api/flows/hello/publish/")  # multipart, no fields

    assert response.status_code == 201


def test_versions_are_listed_newest_first_and_shown_with_their_document(api, owner):
    hello = flow(owner, "hello", slug="hello", publish=True)
    api.put("/api/flows/hello/", {"dsl": sample("hello") | {"name": "Hello 2"}})
    api.post("/api/flows/hello/publish/")

    listed = api.get("/api/flows/hello/versions/").json()
    one = api.get("/api/flows/hello/versions/1/").json()

    assert [v["version"] for v in listed["results"]] == [2, 1]
    assert set(listed["results"][0]) == {"version", "hash", "created_at"}
    assert listed["next"] is None
    assert set(one) == {"version", "hash", "created_at", "dsl"}
    assert one["version"] == 1
    assert one["dsl"] == sample("hello")
    assert one["hash"] == hello.versions.get(number=1).hash


def test_an_unknown_version_is_404(api, owner):
    flow(owner, "hello", slug="hello", publish=True)

    for number in ("2", "0", "99999999999999999999999"):
        assert_error(api.get(f"/api/flows/hello/versions/{number}/"), 404, "not_found")
    assert_error(api.get("/api/flows/hello/versions/one/"), 404, "not_found")


def test_export_gives_the_draft_ready_to_import(api, owner):
    flow(owner, "approval", slug="approval")

    exported = api.get("/api/flows/approval/export/")
    imported = api.post("/api/flows/", {"slug": "copy", "dsl": exported.json()})

    assert exported.status_code == 200
    assert exported.json() == sample("approval")
    assert imported.status_code == 201
    assert imported.json()["dsl"] == sample("approval")
