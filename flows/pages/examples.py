"""Copyable examples shown beside a flow's webhooks: a `curl` that signs its body with a
shell one-liner (openssl), so a person can try a hook without writing any code."""

from __future__ import annotations

import json
import shlex
from typing import Any

from flows.pages.forms import start_inputs

SAMPLE_VALUES = {"string": "text", "integer": 1, "number": 1.5, "boolean": True,
                 "array": [], "object": {}}


def example_inputs(dsl: Any) -> dict[str, Any]:
    """Inputs a flow accepts: each one's default, else a value of its type."""
    return {name: spec["default"] if spec.get("default") is not None
            else SAMPLE_VALUES.get(spec.get("type", "string"), "text")
            for name, spec in start_inputs(dsl).items()}


def curl_example(url: str, dsl: Any, signing_secret: str | None = None) -> str:
    """A shell snippet delivering example inputs to `url`, signed as docs/api.md says."""
    body = json.dumps(example_inputs(dsl), ensure_ascii=False, separators=(",", ":"))
    secret = shlex.quote(signing_secret) if signing_secret else '"$ASTRON_WEBHOOK_SECRET"'
    return "\n".join([
        f"BODY={shlex.quote(body)}",
        "T=$(date +%s)",
        f"SIG=$(printf '%s.%s' \"$T\" \"$BODY\" | openssl dgst -sha256 -hmac {secret} "
        "| sed 's/^.* //')",
        f"curl -sS -X POST {shlex.quote(url)} -H 'Content-Type: application/json' \\",
        "  -H \"Astron-Signature: t=$T,v1=$SIG\" -H \"Astron-Delivery: $(date +%s%N)\" \\",
        "  --data-binary \"$BODY\"",
    ])
