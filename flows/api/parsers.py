"""The one request parser: strict JSON (flows/jsontext.py) that every backend can store."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from flows.jsontext import InvalidJSON, strict_json_loads


class StrictJSONParser(JSONParser):
    """Request bodies, read by strict_json_loads."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            return strict_json_loads(stream.read().decode(encoding))
        except ValueError as error:  # InvalidJSON, or bytes that are not text (UnicodeError)
            reason = error if isinstance(error, InvalidJSON) else f"not valid JSON: {error}"
            raise ParseError(f"the body is {reason}") from None
