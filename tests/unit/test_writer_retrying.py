"""The writer's retry of a failing batch: quiet for an outage, loud once it stops healing."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from writer.service import Retrying


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_short_outage_warns_and_stays_ready(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    retrying = Retrying(60, clock)
    for _ in range(30):
        retrying.failed(OSError("connection refused"))
        clock.now += 1
    retrying.succeeded()
    assert await retrying.applying()
    assert {r.levelno for r in caplog.records if r.name == "writer.service"} == {logging.WARNING}


async def test_a_batch_failing_past_the_limit_is_an_error_and_not_ready_until_it_applies(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    retrying = Retrying(60, clock)
    missing = asyncpg.UndefinedColumnError("column jobs.planned_count does not exist")
    for _ in range(130):  # once a second for 130 s
        retrying.failed(missing)
        clock.now += 1
    assert not await retrying.applying()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    # Once a minute past the limit, not once a retry, naming the likely cause.
    assert len(errors) == 2
    assert "migration" in errors[0].__dict__["hint"]
    retrying.succeeded()
    assert await retrying.applying()


async def test_the_limit_counts_from_the_first_failure_of_the_current_streak() -> None:
    clock = Clock()
    retrying = Retrying(60, clock)
    retrying.failed(OSError())
    clock.now += 59
    retrying.succeeded()
    retrying.failed(OSError())
    clock.now += 59
    assert await retrying.applying()
