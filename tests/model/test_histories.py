"""The model checker in `make test`: seeded random histories against the real stack, with a
nemesis crashing and freezing services, checked against tests/model/model.py.

`make model SEED=… MINUTES=…` replays one seed or soaks; docs/guarantees.md records a soak."""

from __future__ import annotations

import os
from typing import Any

import asyncpg
import httpx
import pytest

from tests.model.workload import run

# Fixed seeds keep CI deterministic in what it tries; DUETIME_MODEL_SEEDS replays others.
SEEDS = [int(s) for s in os.environ.get("DUETIME_MODEL_SEEDS", "1").split(",")]
SECONDS = float(os.environ.get("DUETIME_MODEL_SECONDS", "45"))


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_history_under_faults_keeps_every_promise(
    api: httpx.AsyncClient, pg: asyncpg.Pool[Any], env: dict[str, str], seed: int,
) -> None:
    report = await run(api, pg, env, seed, seconds=SECONDS)
    print(report.explain())
    assert report.figures()["firings"] > 0 and report.faults, "the history exercised nothing"
    assert report.ok, report.explain()
