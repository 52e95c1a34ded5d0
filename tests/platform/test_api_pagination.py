"""Cursor pagination of the lists: newest first, opaque cursors, absolute links, page sizes
up to 200, and a constant number of queries whatever the page size or depth."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flows.models import Run

from .factories import flow, run

pytestmark = pytest.mark.django_db


def walk(api, url, **query):
    """Every page from `url` following `next`: (items, pages)."""
    pages = [api.get(url, query).json()]
    while pages[-1]["next"]:
        pages.append(api.get(pages[-1]["next"]).json())
    return [item for page in pages for item in page["results"]], pages


@pytest.fixture
def seven_runs(owner):
    hello = flow(owner, "hello", slug="hello")
    return [run(owner, hello) for _ in range(7)]


def test_runs_are_listed_newest_first_across_pages(api, seven_runs):
    items, pages = walk(api, "/api/runs/", page_size=3)

    assert [r["id"] for r in items] == [str(r.pk) for r in reversed(seven_runs)]
    assert [len(p["results"]) for p in pages] == [3, 3, 1]
    assert pages[0]["previous"] is None
    assert pages[-1]["next"] is None
    assert all(set(p) == {"results", "next", "previous"} for p in pages)


def test_links_are_absolute_and_cursors_opaque(api, seven_runs):
    first = api.get("/api/runs/", {"page_size": 3}).json()
    second = api.get(first["next"]).json()
    back = api.get(second["previous"]).json()

    assert first["next"].startswith("http://testserver/api/runs/?")
    cursor = parse_qs(urlsplit(first["next"]).query)["cursor"][0]
    assert "created" not in cursor and ":" not in cursor
    assert back["results"] == first["results"]


def test_rows_of_the_run_list_have_no_nodes(api, seven_runs):
    row = api.get("/api/runs/").json()["results"][0]

    assert "nodes" not in row
    assert row["flow"] == "hello" and row["version"] == "draft" and row["status"] == "queued"
    assert row["dsl_hash"].startswith("sha256:") and row["waiting"] == []


def test_flows_are_listed_newest_first_across_pages(api, owner):
    for number in range(5):
        flow(owner, "hello", slug=f"flow-{number}")

    items, pages = walk(api, "/api/flows/", page_size=2)

    assert [f["slug"] for f in items] == [f"flow-{n}" for n in (4, 3, 2, 1, 0)]
    assert len(pages) == 3


def test_the_page_size_defaults_to_50_and_stops_at_200(api, owner):
    hello = flow(owner, "hello", slug="hello")
    for _ in range(205):
        run(owner, hello)

    default = api.get("/api/runs/").json()
    capped = api.get("/api/runs/", {"page_size": 1000}).json()
    nonsense = api.get("/api/runs/", {"page_size": "many"}).json()

    assert len(default["results"]) == 50
    assert len(capped["results"]) == 200
    assert len(nonsense["results"]) == 50


def test_the_run_list_filters_by_flow_status_and_time(api, owner):
    hello = flow(owner, "hello", slug="hello")
    other = flow(owner, "hello", slug="other")
    old, new, elsewhere = run(owner, hello), run(owner, hello), run(owner, other)
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2),
                                         status="succeeded")
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()

    def ids(**query):
        return [r["id"] for r in api.get("/api/runs/", query).json()["results"]]

    assert ids(flow="hello") == [str(new.pk), str(old.pk)]
    assert ids(flow="other") == [str(elsewhere.pk)]
    assert ids(flow="nothing") == []
    assert ids(status="succeeded") == [str(old.pk)]
    assert ids(status="queued", flow="hello") == [str(new.pk)]
    assert ids(created_after=yesterday) == [str(elsewhere.pk), str(new.pk)]
    assert ids(created_before=yesterday) == [str(old.pk)]
    assert ids(created_before="2000-01-01T00:00:00Z") == []
    assert ids(created_after="2000-01-01") == [str(elsewhere.pk), str(new.pk), str(old.pk)]


@pytest.mark.parametrize("page_size", [1, 100])
@pytest.mark.parametrize("query", [{}, {"flow": "hello"},
                                   {"flow": "hello", "status": "queued",
                                    "created_after": "2000-01-01T00:00:00Z"}])
def test_the_run_list_makes_at_most_3_queries_whatever_the_page_size(
        api, owner, django_assert_max_num_queries, page_size, query):
    hello = flow(owner, "hello", slug="hello", publish=True)
    for _ in range(120):
        run(owner, hello)
    api.get("/api/runs/")  # records the key's use, which happens once a minute

    with django_assert_max_num_queries(3):  # the key, the flow filter, the page
        response = api.get("/api/runs/", {"page_size": page_size, **query})

    assert len(response.json()["results"]) == page_size


@pytest.mark.parametrize("page_size", [1, 100])
def test_the_flow_list_makes_at_most_2_queries_whatever_the_page_size(
        api, owner, django_assert_max_num_queries, page_size):
    for number in range(101):
        flow(owner, "hello", slug=f"f{number}")
    api.get("/api/flows/")

    with django_assert_max_num_queries(2):  # the key, the page
        response = api.get("/api/flows/", {"page_size": page_size, "q": "f"})

    assert len(response.json()["results"]) == page_size


def test_a_deep_page_costs_what_the_first_costs(api, owner):
    hello = flow(owner, "hello", slug="hello")
    for _ in range(30):
        run(owner, hello)
    api.get("/api/runs/")
    url, pages = "/api/runs/?page_size=3", []
    for _ in range(8):
        with CaptureQueriesContext(connection) as queries:
            page = api.get(url).json()
        pages.append([q["sql"] for q in queries.captured_queries])
        url = page["next"]

    assert {len(sql) for sql in pages} == {len(pages[0])}
    assert not any("OFFSET" in statement.upper() for sql in pages for statement in sql)


def test_the_run_detail_reads_the_run_and_its_nodes(api, owner, django_assert_max_num_queries):
    queued = run(owner, flow(owner, "hello", slug="hello"))
    api.get("/api/runs/")

    with django_assert_max_num_queries(3):  # the key, the run with its flow, its nodes
        assert api.get(f"/api/runs/{queued.pk}/").status_code == 200


@pytest.mark.parametrize("cursor", ["", "e30=", "cj0x"])  # empty; "{}"; "r=1": no position
def test_a_cursor_that_names_no_position_is_refused_not_taken_for_the_first_page(
        api, seven_runs, cursor):
    response = api.get("/api/runs/", {"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["path"] == "cursor"


def test_every_link_the_pages_give_is_accepted(api, seven_runs):
    _, pages = walk(api, "/api/runs/", page_size=2)
    back = api.get(pages[-1]["previous"])  # a cursor going back, to a page with a previous
    assert back.status_code == 200
    assert api.get(back.json()["previous"]).status_code == 200


@pytest.mark.parametrize("offset", ["+20:00", "-23:59", "+15:59"])
def test_a_time_with_any_offset_iso_8601_allows_is_answered(api, seven_runs, offset):
    """PostgreSQL refuses offsets past ±15:59 in a query: times are compared in UTC."""
    response = api.get("/api/runs/", {"created_after": f"2020-01-01T00:00:00{offset}"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 7
