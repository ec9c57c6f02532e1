"""Services run on the loop their setting names (ADR 0022)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from duetime.loops import run_loop
from duetime.settings import LoopSettings


@pytest.mark.parametrize(("kind", "expected"), [("uvloop", uvloop.Loop),
                                                ("asyncio", asyncio.BaseEventLoop)])
def test_a_service_runs_on_the_loop_its_setting_names(kind: str, expected: type) -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop())

    run_loop(main(), LoopSettings(event_loop=kind).event_loop)  # type: ignore[arg-type]
    assert isinstance(seen[0], expected)
    assert isinstance(seen[0], uvloop.Loop) == (kind == "uvloop")


def test_uvloop_is_the_default() -> None:
    assert LoopSettings().event_loop == "uvloop"
