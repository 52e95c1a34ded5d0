"""What runs reach the world with, configured once per process from settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings

from engine.llm import providers_from_config
from engine.net import GuardedHttpClient
from engine.ports import CodeLimits


@dataclass
class World:
    llm_providers: dict[str, Any] = field(default_factory=dict)
    sandbox: Any = None
    code_limits: CodeLimits = field(default_factory=CodeLimits)
    http: Any = None


@cache
def shared_world() -> World:
    return World(
        llm_providers=providers_from_config(getattr(settings, "LLM_PROVIDERS", {}), os.environ),
        http=GuardedHttpClient(allow_hosts=settings.HTTP_ALLOW_HOSTS),
        code_limits=CodeLimits(
            cpu_s=getattr(settings, "CODE_CPU_S", 10),
            memory_mb=getattr(settings, "CODE_MEMORY_MB", 256),
            output_kb=getattr(settings, "CODE_OUTPUT_KB", 1024),
            wall_s=getattr(settings, "CODE_WALL_S", 30)),
    )
