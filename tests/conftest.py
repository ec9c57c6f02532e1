"""Shared fixtures: one real stack per test run, isolated state per test (unique ids/paths)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from duetime import run_ids
from duetime.kafka import client_options
from tests.support.containers import COMPOSE_ENV, compose_stack
from tests.support.jobs import Cleanup
from tests.support.kafka import kafka_settings
from tests.support.sink import Sink
from tests.support.stack import stack_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        if any(p in parts for p in ("integration", "e2e", "security", "faults", "model", "ui")):
            item.add_marker(pytest.mark.stack)
        if "faults" in parts or "model" in parts:
            item.add_marker(pytest.mark.faults)
        if "faults" in parts or "model" in parts or "ops" in parts:
            item.add_marker(pytest.mark.alone)


@pytest.fixture(scope="session", autouse=True)
def run_id_key() -> None:
    """Tests name runs as the stack does: with its DUETIME_ID_SECRET (duetime.run_ids)."""
    containers = os.environ.get("DUETIME_TEST_ENGINE") == "containers"
    values = COMPOSE_ENV if containers else stack_env()
    run_ids.use_secret(values.get("DUETIME_ID_SECRET", "unit-tests-only-id-secret"))


@pytest.fixture(scope="session")
def env() -> Iterator[dict[str, str]]:
    if os.environ.get("DUETIME_TEST_ENGINE") == "containers":
        # A container engine is present: the compose topology, started by testcontainers.
        with compose_stack() as values:
            yield values
        return
    values = stack_env()
    if "DUETIME_URL" not in values:
        pytest.fail("the local stack is not running: `make up` (or `make test`) starts it")
    yield values


def _client(env: dict[str, str], key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=env["DUETIME_URL"], headers=headers, timeout=30)


@pytest.fixture
async def api(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(env, env["DUETIME_API_KEY"]) as client:
        yield client


@pytest.fixture
async def api_b(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(env, env["DUETIME_API_KEY_B"]) as client:
        yield client


@pytest.fixture
async def anonymous(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(env, None) as client:
        yield client


@pytest.fixture
async def jobs(api: httpx.AsyncClient, api_b: httpx.AsyncClient) -> AsyncIterator[Cleanup]:
    """Creates jobs and cancels all of them after the test, whether it passed or not."""
    cleanup = Cleanup()
    yield cleanup
    await cleanup.cancel_all()


@pytest.fixture(scope="session")
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@pytest.fixture
async def make_sink() -> AsyncIterator[Callable[..., Awaitable[Sink]]]:
    """Start extra sinks (slow, failing) for one test; all are stopped after it."""
    started: list[Sink] = []

    async def make(**options: Any) -> Sink:
        sink = await Sink(**options).start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        await sink.stop()


@pytest.fixture
async def kafka_producer(env: dict[str, str]) -> AsyncIterator[AIOKafkaProducer]:
    # The services' principal: the only one that may write duetime's own topics.
    producer = AIOKafkaProducer(**client_options(kafka_settings(env)), acks="all")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
def path() -> str:
    """A sink path unique to this test, so tests sharing the sink never see each other's hits."""
    return f"/hook/{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
async def pg(env: dict[str, str]) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(env["DUETIME_POSTGRES_DSN"], min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis(env: dict[str, str]) -> AsyncIterator[Redis]:
    client = Redis.from_url(env["DUETIME_REDIS_URL"])
    yield client
    await client.aclose()
