"""The event loop a service runs on: uvloop by default (ADR 0022)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal

import uvloop


def run_loop(main: Coroutine[Any, Any, None], kind: Literal["uvloop", "asyncio"]) -> None:
    factory = uvloop.new_event_loop if kind == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)
