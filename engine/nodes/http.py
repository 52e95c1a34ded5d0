"""The `http` node (docs/dsl.md §5.7; docs/http.md): params and checks in specs_io, execution here.

The node renders its params, sends one request through `services.http` (the guarded client
the platform configured, or the process-wide one) and turns the answer into outputs. What
the address policy, redirects, size and time limits do lives in `engine.net`.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from engine.errors import NodeError
from engine.net import shared_http_client
from engine.net.request import header_pairs, parse_url
from engine.nodes.base import NodeCall
from engine.nodes.specs_io import HttpSpec
from engine.ports import HttpRequest, HttpResponse

DEFAULT_TIMEOUT_S = 30
ERROR_BODY_BYTES = 1024  # how much of a failed answer's body its error keeps


class HttpNode(HttpSpec):
    async def execute(self, call: NodeCall) -> dict[str, Any]:
        params = call.params
        request = build_request(call)
        client = call.services.http or shared_http_client()
        response = await client.send(request)
        if response.status >= 400 and params.get("fail_on_status", True):
            raise NodeError("http_status", f"the server answered {response.status}",
                            details={"status": response.status,
                                     "body": error_body(response)})
        body = decode_body(response, params.get("expect", "auto"))
        return {"status": response.status, "headers": dict(response.headers), "body": body}


def build_request(call: NodeCall) -> HttpRequest:
    """The request the node's params describe, rendered; bad params are `invalid_param`."""
    params = call.params
    url = call.resolve(params["url"])
    headers = {str(name): call.resolve(value) for name, value in
               (params.get("headers") or {}).items()}
    query = {str(name): call.resolve(value) for name, value in
             (params.get("query") or {}).items()}
    try:
        parse_url(url)
        header_pairs(headers)
    except ValueError as error:
        raise NodeError("invalid_param", str(error)) from None
    body = call.resolve(params["body"]) if "body" in params else None
    content: bytes | None = None
    if body is not None:
        content_type = "text/plain; charset=utf-8"
        if isinstance(body, str):
            content = body.encode("utf-8")
        else:  # an object or array, or any other JSON value: sent as JSON
            content_type = "application/json"
            try:
                content = json.dumps(body, separators=(",", ":"), ensure_ascii=False,
                                     allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as error:
                raise NodeError("invalid_param", f"the body cannot be sent as JSON: {error}") \
                    from None
        if not _has(headers, "content-type"):
            headers["Content-Type"] = content_type
    if call.idempotency_key and not _has(headers, "idempotency-key"):
        headers["Idempotency-Key"] = call.idempotency_key
    return HttpRequest(method=params.get("method") or "GET", url=url, headers=headers,
                       query=query, body=content,
                       timeout_s=params.get("timeout_s", DEFAULT_TIMEOUT_S))


def _has(headers: dict[str, str], name: str) -> bool:
    return any(key.lower() == name for key in headers)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip('"').strip("'")
            try:
                return codecs.lookup(name).name
            except LookupError:
                break
    return "utf-8"


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(content: bytes) -> Any:
    # json.loads detects UTF-8/16/32 itself. NaN and Infinity are refused: they are not JSON
    # and could not be stored with the run.
    return json.loads(content, parse_constant=_reject_constant)


def decode_body(response: HttpResponse, expect: str) -> Any:
    """The `body` output: parsed JSON, or text (docs/http.md, "Response body")."""
    content = response.content
    if expect == "json" or (expect == "auto" and _is_json_type(response.content_type)):
        if not content.strip():
            return None  # 204, HEAD, or an empty answer: no value
        try:
            return _parse_json(content)
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            if expect == "auto":
                return content.decode(_charset(response.content_type), "replace")
            raise NodeError("output_type", f"the answer is not valid JSON: {error}",
                            details={"status": response.status,
                                     "body": error_body(response)}) from None
    return content.decode(_charset(response.content_type), "replace")


def error_body(response: HttpResponse) -> str:
    """The first KiB of a body, as text, for errors."""
    return response.content[:ERROR_BODY_BYTES].decode(_charset(response.content_type),
                                                       "replace")
