"""Defect 9: once the call was made, a brief Kafka/Redis error never fires it again.

The executor runs against fakes: a producer whose sends can fail (it is also the Kafka
target, so every firing is one send to TARGET_TOPIC) and a due-set whose completion can fail.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError

from duetime.attempts import START_STEP
from duetime.clock import ReferenceClock, wall_ms
from duetime.due_set import DueSet, Entry, Start, StartVerdict
from duetime.timeutil import to_ms
from executor.service import Executor, Settings
from schemas.events import RunRequested

TARGET_TOPIC = "t.target"  # tenant "t" may use "t.*" (the default allowlist)


class FlakyProducer:
    """Records what it sends; the next `fail[what]` sends of `what` fail (a status, the target)."""

    def __init__(self, **fail: int) -> None:
        self.fail = fail
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: Any = None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        body: dict[str, Any] = {} if topic == TARGET_TOPIC else orjson.loads(value)
        what: str = "target" if topic == TARGET_TOPIC else body.get("status", "letter")
        if self.fail.get(what, 0) > 0:
            self.fail[what] -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            self.sent.append((what, body))
            future.set_result(None)
        return future

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None,
                            headers: Any = None) -> None:
        await (await self.send(topic, value, key, headers))

    def sent_of(self, what: str) -> list[dict[str, Any]]:
        return [body for w, body in self.sent if w == what]


class FlakyDueSet:
    def __init__(self, executor_held: dict[str, Entry], fail_completes: int = 0) -> None:
        self.fail_completes = fail_completes
        self.fail_starts = 0
        self.starts = 0
        self.verdict = StartVerdict(Start.OK)
        self.completed: list[tuple[Entry, Entry | None]] = []
        self.held_while_completing: list[bool] = []
        self._held = executor_held

    async def start(self, entry: Entry, overlap: str, now_ms: int, executor_id: str = "",
                    member: str = "") -> StartVerdict:
        self.starts += 1
        if self.fail_starts > 0:
            self.fail_starts -= 1
            raise RedisConnectionError("Redis is loading the dataset in memory")
        return self.verdict

    async def complete(self, entry: Entry, retry: Entry | None, retry_at_ms: int) -> None:
        self.held_while_completing.append(entry.runkey in self._held)
        if self.fail_completes > 0:
            self.fail_completes -= 1
            raise RedisConnectionError("connection reset")
        self.completed.append((entry, retry))


def _request(entry: Entry, max_attempts: int = 1) -> RunRequested:
    at = datetime.fromtimestamp(entry.scheduled_ms / 1000, UTC)
    return RunRequested(run_id=entry.run_id, job_id=entry.job_id, tenant="t",
                        job_version=entry.version, scheduled_at=at, due_at=at,
                        attempt=entry.attempt, priority=entry.priority,
                        target={"type": "kafka", "topic": TARGET_TOPIC, "value": "hi"},  # type: ignore[arg-type]
                        retry={"max_attempts": max_attempts, "jitter": False},  # type: ignore[arg-type]
                        member=entry.member(), dispatched_at=at)


async def _this_machine() -> float:
    return wall_ms()  # no Redis here: this machine's clock is the reference


def _executor(producer: FlakyProducer, fail_completes: int = 0,
              running_after_ms: int = 250) -> tuple[Executor, FlakyDueSet]:
    executor = Executor(cast(DueSet, None), cast(Any, producer), cast(Any, None),
                        Settings(executor_id="x1", running_status_after_ms=running_after_ms),
                        clock=ReferenceClock(_this_machine),
                        target_producer=producer)
    due = FlakyDueSet(executor.leases.held, fail_completes)
    executor.due_set = cast(DueSet, due)
    return executor, due


def _entry() -> Entry:
    past = datetime.now(UTC) - timedelta(seconds=1)
    return Entry("job-1", 1, to_ms(past), 1, 5)


async def _execute(executor: Executor, req: RunRequested, entry: Entry) -> None:
    await asyncio.wait_for(executor.execute(req, entry, req.model_dump_json().encode()), timeout=10)


async def test_a_failed_final_status_is_retried_and_the_call_made_once() -> None:
    producer = FlakyProducer(succeeded=2)
    executor, due = _executor(producer)
    entry = _entry()
    await _execute(executor, _request(entry), entry)
    assert len(producer.sent_of("target")) == 1
    [final] = producer.sent_of("succeeded")
    assert final["final"] is True and final["run_id"] == entry.run_id
    assert due.completed == [(entry, None)]


async def test_a_failed_completion_is_retried_while_the_lease_is_held() -> None:
    producer = FlakyProducer()
    executor, due = _executor(producer, fail_completes=3)
    entry = _entry()
    await _execute(executor, _request(entry), entry)
    assert len(producer.sent_of("target")) == 1
    assert due.completed == [(entry, None)]
    # Every try happened while the attempt was held, so its lease kept being renewed.
    assert due.held_while_completing == [True] * 4
    assert entry.runkey not in executor.leases.held


async def test_a_retry_is_scheduled_once_even_when_its_writes_fail() -> None:
    producer = FlakyProducer(target=1, failed=1)  # the call fails: attempt 2 of 3 is due
    executor, due = _executor(producer, fail_completes=1)
    entry = _entry()
    await _execute(executor, _request(entry, max_attempts=3), entry)
    assert due.completed == [(entry, entry.next_attempt())]
    [status] = producer.sent_of("failed")
    assert status["final"] is False


async def test_the_dead_letter_of_a_last_failure_is_retried_too() -> None:
    producer = FlakyProducer(target=1, letter=1)
    executor, due = _executor(producer)
    entry = _entry()
    await _execute(executor, _request(entry), entry)
    assert len(producer.sent_of("letter")) == 1 and len(producer.sent_of("failed")) == 1
    assert due.completed == [(entry, None)]


@pytest.mark.parametrize("failures", [1, 3])
async def test_a_lost_running_status_neither_holds_back_nor_repeats_the_call(failures: int) -> None:
    producer = FlakyProducer(running=failures)
    executor, due = _executor(producer, running_after_ms=0)  # a running status for every call
    entry = _entry()
    await _execute(executor, _request(entry), entry)
    assert len(producer.sent_of("target")) == 1
    assert producer.sent_of("running") == []  # never retried once the call is under way
    [final] = producer.sent_of("succeeded")
    assert final["started_at"] and final["lateness_ms"] is not None
    assert due.completed == [(entry, None)]


async def test_a_failed_start_verdict_is_asked_again_instead_of_waiting_out_the_lease() -> None:
    """Redis restarting at the due instant: the verdict is asked again (start_run.lua refuses
    a caller whose lease was lost, so asking again is safe) and the call is made once, at once,
    not a lease later by whoever the sweep hands the attempt to."""
    producer = FlakyProducer()
    executor, due = _executor(producer)
    due.fail_starts = 3
    entry = _entry()
    await _execute(executor, _request(entry), entry)
    assert due.starts == 4
    assert len(producer.sent_of("target")) == 1
    assert len(producer.sent_of("succeeded")) == 1 and due.completed == [(entry, None)]


async def test_an_attempt_whose_lease_was_lost_is_left_to_its_new_holder() -> None:
    producer = FlakyProducer()
    executor, due = _executor(producer)
    due.verdict = StartVerdict(Start.LOST)
    entry = _entry()
    await _execute(executor, _request(entry), entry)
    assert producer.sent == []  # no call, no status: the new holder records the attempt
    assert due.completed == [] and entry.runkey not in executor.leases.held


def _start_steps() -> dict[tuple[str, str], float]:
    """The start-step histogram's cumulative bucket counts, by (step, le)."""
    return {(s.labels["step"], s.labels["le"]): s.value for metric in START_STEP.collect()
            for s in metric.samples if s.name.endswith("_bucket")}


async def test_the_start_of_each_firing_is_timed_by_step() -> None:
    """A firing's lateness before its call splits into the wake (how long after the instant
    the process got to run) and the verdict's round trip: one of each per start. A run handed
    over a second after its instant woke a second late; its verdict (a fake) took no time."""
    producer = FlakyProducer()
    executor, due = _executor(producer)
    due.fail_starts = 2  # failed verdicts are retried, not timed
    entry = _entry()  # due a second ago
    before = _start_steps()
    await _execute(executor, _request(entry), entry)
    after = _start_steps()
    grew = {key: after[key] - before.get(key, 0.0) for key in after}
    assert grew[("wake", "+Inf")] == 1 and grew[("wake", "0.1")] == 0 and grew[("wake", "1.0")] == 0
    assert grew[("verdict", "+Inf")] == 1 and grew[("verdict", "0.001")] == 1
