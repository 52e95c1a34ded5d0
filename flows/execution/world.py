"""What runs reach the world with, configured once per process from settings."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings

from engine.llm import providers_from_config
from engine.net import GuardedHttpClient
from engine.nodes.llm import provider_names
from engine.ports import CodeLimits
from engine.redaction import NO_SECRETS, Redactor
from engine.sandbox import ProcessSandbox, sandbox_status

logger = logging.getLogger(__name__)


@dataclass
class World:
    llm_providers: dict[str, Any] = field(default_factory=dict)
    sandbox: Any = None
    code_limits: CodeLimits = field(default_factory=CodeLimits)
    http: Any = None
    redactor: Redactor = NO_SECRETS


@cache
def shared_world() -> World:
    return build_world()


def llm_provider_names() -> list[str]:
    """What an llm node's `provider` may name on this server (the editor offers them)."""
    return provider_names(shared_world().llm_providers)


def build_world() -> World:
    """The world as the settings and the environment describe it now."""
    limits = CodeLimits(cpu_s=settings.CODE_CPU_S, memory_mb=settings.CODE_MEMORY_MB,
                        output_kb=settings.CODE_OUTPUT_KB, wall_s=settings.CODE_WALL_S)
    providers = providers_from_config(settings.LLM_PROVIDERS, os.environ)
    keys = [key for provider in providers.values()
            for key in getattr(provider, "secrets", tuple)()]
    return World(
        llm_providers=providers,
        redactor=Redactor(keys),
        http=GuardedHttpClient(allow_hosts=settings.HTTP_ALLOW_HOSTS),
        # The pool starts its processes on first use, on the executor's loop.
        sandbox=ProcessSandbox(limits, workers=settings.CODE_WORKERS)
        if settings.CODE_WORKERS > 0 else None,
        code_limits=limits,
    )


def announce_isolation() -> dict[str, Any]:
    """Say loudly, at start, when code nodes run without bubblewrap."""
    status = sandbox_status()
    if status.get("warning"):
        logger.warning("CODE SANDBOX: %s", status["warning"])
    else:
        logger.info("code sandbox: %s", status.get("isolation"))
    return status
