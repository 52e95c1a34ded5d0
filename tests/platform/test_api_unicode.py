"""Unicode in request bodies: a lone surrogate escape ("\\ud800") is JSON text no database
can store and no response can encode, so it is refused at the entrance like a NUL character
(400 invalid_json); a properly paired escape ("\\ud83d\\ude00" is 😀) is an ordinary
character and is accepted (docs/api.md: UTF-8, no 500 for bad input)."""

import json

import pytest

from flows import services
from flows.models import Flow, Run

from .factories import assert_error, flow, no_rows_change, run, sample

pytestmark = pytest.mark.django_db

LONE = ["\\ud800", "\\udfff", "x\\ud800y", "\\ude00\\ud83d", "\\ud83d", "\\uDBFF!"]


def body(value: str, template: str) -> str:
    """`template` with `@` replaced by a JSON string whose escaped text is `value`."""
    return template.replace("@", f'"{value}"')


def hello_with(description_json: str) -> str:
    document = json.dumps(sample("hello"))
    return '{"dsl": ' + document[:-1] + ', "description": ' + description_json + "}}"


@pytest.mark.parametrize("lone", LONE)
@pytest.mark.parametrize("where", ["description", "key", "nested key"])
def test_a_lone_surrogate_in_a_new_flow_is_400_invalid_json(api, lone, where):
    text = {"description": hello_with(f'"{lone}"'),
            "key": '{"dsl": {}, "' + lone + '": 1}',
            "nested key": hello_with('"ok", "' + lone + '": 1')}[where]

    with no_rows_change():
        response = api.post("/api/flows/", text, content_type="application/json")

    error = assert_error(response, 400, "invalid_json")
    assert "surrogate" in error["message"]


@pytest.mark.parametrize(("method", "path", "template"), [
    ("post", "/api/flows/validate/", '{"dsl": {}, @: 1}'),
    ("post", "/api/flows/validate/", '{"dsl": {"name": @}}'),
    ("put", "/api/flows/hello/", '{"dsl": {"name": @}}'),
    ("post", "/api/flows/hello/runs/", '{"inputs": {"name": @}}'),
    ("post", "/api/flows/hello/runs/", '{"inputs": {"name": "Ada"}, "version": [@]}'),
    ("post", "/api/flows/hello/publish/", "{@: 1}"),
])
def test_a_lone_surrogate_anywhere_is_400_invalid_json(api, owner, method, path, template):
    flow(owner, "hello", slug="hello")

    with no_rows_change():
        response = getattr(api, method)(path, body("\\ud800", template),
                                        content_type="application/json")

    assert_error(response, 400, "invalid_json")


def test_a_lone_surrogate_in_an_answer_is_refused_before_anything_reads_it(api, owner):
    queued = run(owner, flow(owner, "approval", slug="approval"), {"request": "refund"})

    with no_rows_change():
        response = api.post(f"/api/runs/{queued.pk}/answer/",
                            '{"answer": "\\ud800", "option": "yes"}',
                            content_type="application/json")

    assert_error(response, 400, "invalid_json")  # not 409 not_waiting: the body is refused
    read = api.get(f"/api/runs/{queued.pk}/")
    assert read.status_code == 200
    assert read.json()["answer"] is None


def test_paired_surrogate_escapes_are_an_ordinary_character(api, owner):
    response = api.post("/api/flows/", hello_with('"smile \\ud83d\\ude00 \\uD83D\\uDE00"'),
                        content_type="application/json")

    assert response.status_code == 201, response.content
    assert response.json()["description"] == "smile 😀 😀"
    assert Flow.objects.get(owner=owner).description == "smile 😀 😀"


def test_paired_surrogates_in_inputs_and_keys_are_accepted(api, owner):
    flow(owner, "hello", slug="hello")

    response = api.post("/api/flows/hello/runs/",
                        '{"inputs": {"name": "\\ud83d\\ude00"}}', content_type="application/json")
    checked = api.post("/api/flows/validate/",
                       '{"dsl": {"\\ud83d\\ude00": 1}}', content_type="application/json")

    assert response.status_code == 201, response.content
    assert response.json()["inputs"] == {"name": "😀"}
    assert Run.objects.get().inputs == {"name": "😀"}
    assert checked.status_code == 200, checked.content
    assert checked.json()["valid"] is False


def test_raw_utf8_characters_beyond_the_bmp_are_accepted(api, owner):
    flow(owner, "hello", slug="hello")

    response = api.post("/api/flows/hello/runs/", '{"inputs": {"name": "😀 é"}}'.encode(),
                        content_type="application/json")

    assert response.status_code == 201, response.content
    assert services.run_of(owner, response.json()["id"]).inputs == {"name": "😀 é"}


def test_an_encoded_surrogate_in_the_bytes_is_400_invalid_json(api):
    # UTF-8 cannot encode a surrogate; these bytes are what a lax encoder would send.
    with no_rows_change():
        response = api.post("/api/flows/", b'{"dsl": "\xed\xa0\x80"}',
                            content_type="application/json")

    assert_error(response, 400, "invalid_json")
