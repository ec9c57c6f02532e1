"""Issue 7, hole 5: the Idempotency-Key (the run id, also `webhook-id`) cannot be predicted.

The exploit: the key used to be uuid5(a namespace in the public source, "job_id@instant"). Anyone
who knows a job id and its schedule could send the receiver a request carrying the next firing's
key first; a receiver that drops repeated keys would then drop the real firing. Now the key is a
MAC under the server's secret: the attacker's computed key is not the one the firing carries, and
the real firing's key is still one and the same for every attempt of that instant.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx

from duetime.run_ids import run_id_for
from tests.support.jobs import Cleanup, http_job, wait_runs
from tests.support.sink import Hit, Sink

# What the source published before issue 7 (duetime/run_ids.py at 712f7c6).
PUBLIC_NAMESPACE = uuid.UUID("5b0f3e0e-6a43-4a53-9d1c-2a7f4f0c9e11")


def predicted_by_an_outsider(job_id: str, scheduled_ms: int) -> str:
    return str(uuid.uuid5(PUBLIC_NAMESPACE, f"{job_id}@{scheduled_ms}"))


async def test_a_known_job_and_instant_do_not_give_away_the_key(
        api: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]], path: str,
        jobs: Cleanup) -> None:
    answers = iter([500])  # the first attempt fails, so the firing is sent again
    first_fails = await make_sink(status_for=lambda _: next(answers, 200))
    due = (int(time.time()) + 3) * 1000
    job_id = await jobs.create(api, http_job(
        first_fails.url(path), {"type": "once", "at": datetime.fromtimestamp(due / 1000, UTC)
                                .isoformat()},
        retry={"max_attempts": 2, "initial_delay_seconds": 1, "jitter": False}))

    # The attacker reads the job id and the instant and gets their key to the receiver first.
    receiver_seen = {predicted_by_an_outsider(job_id, due)}
    first, retry = await first_fails.wait_for(path, count=2, timeout=30)

    key = first.headers["Idempotency-Key"]
    assert key not in receiver_seen, "the firing's key was predictable: it would be dropped"
    assert uuid.UUID(key).version == 8
    # Redelivered (here: retried) the firing keeps its one key, as receivers' dedupe needs.
    assert [h.headers["X-Duetime-Attempt"] for h in (first, retry)] == ["1", "2"]
    assert keys(retry) == keys(first) == (key, key, key)
    # Every service derives it alike from the server's key: the stack's record and ours agree.
    assert key == run_id_for(job_id, due)
    [run] = await wait_runs(api, job_id, "succeeded")
    assert run["run_id"] == key and run["attempt"] == 2


def keys(hit: Hit) -> tuple[str, str, str]:
    return (hit.headers["Idempotency-Key"], hit.headers["X-Duetime-Run-Id"],
            hit.headers.get("webhook-id", hit.headers["Idempotency-Key"]))
