"""Every object belongs to its owner: someone else's flow or run answers 404, never 403,
and lists show only one's own."""

import pytest

from .factories import assert_error, flow, no_rows_change, run, sample

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(owner):
    hello = flow(owner, "hello", slug="hello", publish=True)
    return hello, run(owner, hello)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "/api/flows/hello/", None),
    ("put", "/api/flows/hello/", {"dsl": sample("router")}),
    ("delete", "/api/flows/hello/", None),
    ("post", "/api/flows/hello/publish/", None),
    ("get", "/api/flows/hello/versions/", None),
    ("get", "/api/flows/hello/versions/1/", None),
    ("get", "/api/flows/hello/export/", None),
    ("post", "/api/flows/hello/runs/", {"inputs": {"name": "Eve"}}),
])
def test_someone_elses_flow_is_404(outsider_api, theirs, method, path, body):
    with no_rows_change():
        response = getattr(outsider_api, method)(path, body)

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "", None), ("get", "events/", None),
    ("post", "answer/", {"answer": "yes"}), ("post", "cancel/", None),
])
def test_someone_elses_run_is_404(outsider_api, theirs, method, path, body):
    _, their_run = theirs

    with no_rows_change():
        response = getattr(outsider_api, method)(f"/api/runs/{their_run.pk}/{path}", body)

    assert_error(response, 404, "not_found")


def test_lists_show_only_ones_own(outsider_api, outsider, theirs):
    mine = flow(outsider, "hello", slug="mine")
    my_run = run(outsider, mine)

    flows = outsider_api.get("/api/flows/").json()["results"]
    runs = outsider_api.get("/api/runs/").json()["results"]
    filtered = outsider_api.get("/api/runs/", {"flow": "hello"}).json()["results"]

    assert [f["slug"] for f in flows] == ["mine"]
    assert [r["id"] for r in runs] == [str(my_run.pk)]
    assert filtered == []


def test_staff_see_only_their_own_objects_through_the_api(staff, theirs):
    from .factories import api_client

    staff_api = api_client(staff)

    assert_error(staff_api.get("/api/flows/hello/"), 404, "not_found")
    assert staff_api.get("/api/runs/").json()["results"] == []


def test_the_same_slug_under_two_owners_are_two_flows(api, outsider_api, theirs):
    outsider_api.post("/api/flows/", {"slug": "hello", "dsl": sample("router")})

    assert api.get("/api/flows/hello/").json()["name"] == "Hello"
    assert outsider_api.get("/api/flows/hello/").json()["name"] == "Length router"
