"""Run identity under edits, retries and pauses (issue 6 defect 3), in-process.

The writer, a dispatcher's pop and an executor run against the real Postgres, Redis and an
HTTP sink on a due-set prefix of their own (tests/support/pipeline.py). Each test drives the
race by hand: the pop ~100 ms before the due instant, a command, the start check at the due
instant. A firing refused as stale or paused must not use its run up; the run id (the
webhook's Idempotency-Key) stays the same whichever version fires it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.requests import queued_status, run_request
from duetime.due_set import Popped
from duetime.run_ids import run_id_for
from duetime.timeutil import now_ms, to_ms, utcnow
from schemas.event_json import run_request_json
from schemas.events import RunRequested
from tests.support.pipeline import Pipeline
from tests.support.sink import Sink


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def _sleep_until(ms: int) -> None:
    await asyncio.sleep(max(0.0, (ms - now_ms()) / 1000))


async def test_an_edit_between_the_pop_and_the_due_instant_still_fires_the_new_version(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    due = now_ms() + 1500
    job_id = await pipeline.create({"type": "once", "at": _at(due)}, sink.url(path + "/old"))
    # Popped 400 ms ahead (a lookahead of 500): the edit must land before the instant, and on a
    # box busy with other test processes 100 ms was not always enough for it.
    await _sleep_until(due - 400)
    assert await pipeline.dispatch(lookahead_ms=500) == ["ok"]  # v1 waits for its instant
    patch = pipeline.command(job_id, "patch", patch={"target": {"url": sink.url(path + "/new")}})
    await pipeline.send(patch)  # lands inside the lookahead
    assert now_ms() < due
    # v2's entry for the same instant takes the lease over from v1, which has not started.
    assert await pipeline.dispatch(lookahead_ms=500) == ["ok"]
    await pipeline.settle()

    assert sink.hits_for(path + "/old") == []
    [hit] = sink.hits_for(path + "/new")
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, due)
    await pipeline.persist()
    job = await pipeline.job(job_id)
    assert (job["state"], job["version"], job["run_count"]) == ("completed", 2, 1)
    [run] = await pipeline.runs(job_id)
    assert (run["run_id"], run["status"], run["attempt"]) == (run_id_for(job_id, due),
                                                              "succeeded", 1)


async def _one_shot_firing_under_way(pipeline: Pipeline, slow: Sink, path: str) -> str:
    """A one-shot job (version 1) due in a second whose call to `slow` is under way."""
    due = now_ms() + 1000
    job_id = await pipeline.create({"type": "once", "at": _at(due)}, slow.url(path))
    await _sleep_until(due - 100)
    assert await pipeline.dispatch() == ["ok"]
    await slow.wait_for(path, 1, timeout=5)
    return job_id


async def test_an_edit_after_the_old_version_started_does_not_fire_the_instant_twice(
    pipeline: Pipeline, make_sink: Callable[..., Awaitable[Sink]], path: str,
) -> None:
    slow = await make_sink(delay_seconds=1.5)
    job_id = await _one_shot_firing_under_way(pipeline, slow, path + "/old")
    await pipeline.send(pipeline.command(
        job_id, "patch", patch={"target": {"url": slow.url(path + "/new")}}))
    # v2's entry finds v1's attempt started: it waits for it instead of firing again...
    assert await pipeline.dispatch() == ["later"]
    await pipeline.settle()
    await _sleep_until(now_ms() + 300)
    # ...and, v1 having succeeded, it is done.
    assert await pipeline.dispatch() == ["done"]
    assert slow.hits_for(path + "/new") == [] and len(slow.hits_for(path + "/old")) == 1
    await pipeline.persist()
    assert (await pipeline.job(job_id))["state"] == "completed"


async def test_rescheduling_a_one_shot_job_while_its_firing_is_under_way_fires_the_new_instant(
    pipeline: Pipeline, make_sink: Callable[..., Awaitable[Sink]], sink: Sink, path: str,
) -> None:
    """The old instant's firing ends after the edit was applied: it is a firing made, owed by
    the old version, not the new plan's. Counted as the new plan's, it completed the job and
    dropped the new instant (found reading the writer's two topics, 2026-11-28)."""
    slow = await make_sink(delay_seconds=1.5)
    job_id = await _one_shot_firing_under_way(pipeline, slow, path + "/old")
    later = now_ms() + 2500
    await pipeline.send(pipeline.command(job_id, "patch", patch={
        "schedule": {"type": "once", "at": _at(later)}, "target": {"url": sink.url(path + "/new")}}))
    await pipeline.settle()
    await pipeline.persist()  # v1's final status, recorded after the edit

    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("active", 1)
    assert job["next_run_at"] == datetime.fromtimestamp(later / 1000, UTC)
    await _sleep_until(later - 100)
    assert await pipeline.dispatch() == ["ok"]
    await pipeline.settle()
    [hit] = sink.hits_for(path + "/new")
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, later)
    await pipeline.persist()
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"], job["next_run_at"]) == ("completed", 2, None)


async def test_patching_a_one_shot_job_during_its_retry_backoff_fires_the_fixed_target(
    pipeline: Pipeline, make_sink: Callable[..., Awaitable[Sink]], sink: Sink, path: str,
) -> None:
    broken = await make_sink(status=500)
    due = now_ms() + 300
    retry = {"max_attempts": 3, "initial_delay_seconds": 60, "jitter": False}
    job_id = await pipeline.create({"type": "once", "at": _at(due)}, broken.url(path),
                                   retry=retry)
    await _sleep_until(due - 100)
    assert await pipeline.dispatch() == ["ok"]
    await pipeline.settle()
    await pipeline.persist()  # attempt 1 failed, attempt 2 is a minute away
    assert len(broken.hits_for(path)) == 1

    await pipeline.send(pipeline.command(job_id, "patch",
                                         patch={"target": {"url": sink.url(path)}}))
    # The new version's firing of the instant continues the run as its next attempt, now.
    assert await pipeline.dispatch() == ["next"]
    assert await pipeline.dispatch() == ["ok"]
    await pipeline.settle()

    [hit] = sink.hits_for(path)
    assert hit.headers["X-Duetime-Attempt"] == "2"
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, due)
    await pipeline.persist()
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("completed", 1)
    [run] = await pipeline.runs(job_id)
    assert (run["status"], run["attempt"], run["final"]) == ("succeeded", 2, True)
    # The old version's retry is dropped when it comes due.
    stale = [p.verdict for p in await pipeline.pop(lookahead_ms=120_000)]
    assert stale == ["stale"]


async def test_a_one_shot_job_paused_at_its_start_check_fires_once_resumed(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    due = now_ms() + 1500
    job_id = await pipeline.create({"type": "once", "at": _at(due)}, sink.url(path))
    await _sleep_until(due - 400)  # room for the pause to land before the instant
    assert await pipeline.dispatch(lookahead_ms=500) == ["ok"]
    await pipeline.send(pipeline.command(job_id, "pause"))
    assert now_ms() < due
    await pipeline.settle()  # refused at its instant: paused
    assert [s["status"] for s in pipeline.statuses()] == ["skipped"]
    await pipeline.persist()
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("paused", 0)
    assert job["next_run_at"] is not None  # not used up
    assert sink.hits_for(path) == []

    await pipeline.send(pipeline.command(job_id, "resume"))
    assert await pipeline.dispatch() == ["ok"]
    await pipeline.settle()
    [hit] = sink.hits_for(path)
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, due)
    await pipeline.persist()
    assert (await pipeline.job(job_id))["state"] == "completed"
    [run] = await pipeline.runs(job_id)
    assert (run["status"], run["attempt"]) == ("succeeded", 1)


async def test_a_one_shot_job_paused_across_its_due_time_fires_and_completes_on_resume(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    due = now_ms() + 500
    job_id = await pipeline.create({"type": "once", "at": _at(due)}, sink.url(path))
    await pipeline.send(pipeline.command(job_id, "pause"))
    await _sleep_until(due + 200)
    assert [p.verdict for p in await pipeline.pop()] == ["paused"]
    await pipeline.persist()
    assert (await pipeline.job(job_id))["state"] == "paused"

    started = time.monotonic()
    await pipeline.send(pipeline.command(job_id, "resume"))
    assert await pipeline.dispatch() == ["ok"]
    await pipeline.settle()
    assert len(sink.hits_for(path)) == 1 and time.monotonic() - started < 5
    await pipeline.persist()
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("completed", 1)


async def test_a_run_now_is_not_superseded_by_a_resume_or_an_edit_before_it_ran(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    """Found by the model checker's soak: a run-now requested while paused, resumed before the
    (crashed) executor came back, was refused as stale and never fired."""
    job_id = await pipeline.create({"type": "interval", "every_seconds": 3600}, sink.url(path))
    await pipeline.send(pipeline.command(job_id, "pause"),
                        pipeline.command(job_id, "run", run_at=utcnow().isoformat()))
    [popped] = [p for p in await pipeline.pop() if p.verdict == "run"]  # dispatched...
    await pipeline.send(pipeline.command(job_id, "resume"))  # ...then a new version
    assert await pipeline.claim_and_run(popped) == "ok"
    await pipeline.settle()
    assert len(sink.hits_for(path)) == 1  # it ran, not "superseded by an edit"

    moved = f"{path}/moved"
    await pipeline.send(pipeline.command(job_id, "run", run_at=utcnow().isoformat()),
                        pipeline.command(job_id, "patch",
                                         patch={"target": {"url": sink.url(moved)}}))
    assert await pipeline.dispatch() == ["ok"]  # not dropped at pop as stale
    await pipeline.settle()
    assert len(sink.hits_for(moved)) == 1  # the current spec's target


async def _backlogged_first_firing(pipeline: Pipeline, url: str) -> tuple[str, int, Popped]:
    """An every-second job whose first firing was dispatched on time but reaches its executor
    only after the instant (a backlog): (job id, instant, the popped entry)."""
    job_id = await pipeline.create({"type": "interval", "every_seconds": 1}, url)
    due = to_ms((await pipeline.job(job_id))["next_run_at"])
    await _sleep_until(due - 100)
    [popped] = await pipeline.pop()
    await _sleep_until(due + 200)
    return job_id, due, popped


async def test_an_edit_issued_after_an_instant_still_fires_it_with_the_version_it_was_owed_by(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    job_id, due, popped = await _backlogged_first_firing(pipeline, sink.url(path + "/old"))
    await pipeline.send(pipeline.command(
        job_id, "patch", patch={"target": {"url": sink.url(path + "/new")}}))
    # The edit governs the instants from when it was issued; this one was owed before (ADR 0036).
    assert await pipeline.claim_and_run(popped) == "ok"
    await pipeline.settle()
    [hit] = sink.hits_for(path + "/old")
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, due)
    await _sleep_until(due + 1000)
    assert await pipeline.dispatch() == ["ok"]  # the next instant: the new version's
    await pipeline.settle()
    [later] = sink.hits_for(path + "/new")
    assert later.headers["X-Duetime-Scheduled-At"] > hit.headers["X-Duetime-Scheduled-At"]
    assert len(sink.hits_for(path + "/old")) == 1


async def test_a_pause_issued_after_an_instant_still_fires_it_and_nothing_after(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    job_id, due, popped = await _backlogged_first_firing(pipeline, sink.url(path))
    await pipeline.send(pipeline.command(job_id, "pause"))
    assert await pipeline.claim_and_run(popped) == "ok"
    await pipeline.settle()
    [hit] = sink.hits_for(path)
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, due)
    await _sleep_until(due + 1000)
    # The instants after the pause are dropped as paused (none fires).
    assert all(p.verdict == "paused" for p in await pipeline.pop())
    await pipeline.persist()
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("paused", 1)


async def _lease_lapses_across(pipeline: Pipeline, url: str, kind: str,
                               **fields: Any) -> tuple[str, int, Popped]:
    """An every-second job's first (owed) firing is claimed by an executor that then stops
    renewing — killed, or starved of CPU past its lease (its renewal paused; here it never
    comes) — and the job gets a `kind` command meanwhile. Past the lease a live executor's
    sweep requeues the entry and the dispatcher pops it again: (job id, instant, that pop)."""
    job_id, due, popped = await _backlogged_first_firing(pipeline, url)
    assert popped.entry is not None
    assert await pipeline.due.claim(popped.entry, popped.member, "starved-executor", now_ms(),
                                    300) == "ok"
    await pipeline.send(pipeline.command(job_id, kind, **fields))
    await _sleep_until(now_ms() + 400)
    assert await pipeline.due.requeue_expired_leases(0, now_ms()) == 1
    [again] = [p for p in await pipeline.pop(lookahead_ms=0) if p.member == popped.member]
    return job_id, due, again


async def test_an_owed_firing_whose_executor_lost_its_lease_fires_after_an_edit(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    """An executor claimed an owed instant, then could not renew its lease (killed, or starved
    of CPU under load); the job was edited meanwhile. The entry the lease sweep puts back is
    still owed under its own version (ADR 0036): dropping it as stale at the pop lost the
    firing, or — when the lost executor had made the call — left its run recorded `queued`
    for ever (the model checker's "unrecorded" under load)."""
    job_id, due, again = await _lease_lapses_across(
        pipeline, sink.url(path + "/old"), "patch",
        patch={"target": {"url": sink.url(path + "/new")}})

    assert again.verdict == "run"
    assert await pipeline.claim_and_run(again) == "ok"
    await pipeline.settle()
    [hit] = sink.hits_for(path + "/old")  # the version it was owed by, its target
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, due)
    assert sink.hits_for(path + "/new") == []
    await pipeline.persist()
    [run] = await pipeline.runs(job_id)
    assert (run["run_id"], run["status"], run["attempt"]) == (run_id_for(job_id, due),
                                                              "succeeded", 1)


async def test_an_owed_firing_whose_executor_lost_its_lease_fires_after_a_pause(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    job_id, due, again = await _lease_lapses_across(pipeline, sink.url(path), "pause")

    assert again.verdict == "run"
    assert await pipeline.claim_and_run(again) == "ok"
    await pipeline.settle()
    [hit] = sink.hits_for(path)
    assert hit.headers["Idempotency-Key"] == run_id_for(job_id, due)
    await pipeline.persist()
    [run] = await pipeline.runs(job_id)
    assert (run["status"], run["attempt"]) == ("succeeded", 1)
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("paused", 1)


async def test_an_owed_firing_whose_executor_lost_its_lease_stays_stopped_by_a_cancel(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    _, _, again = await _lease_lapses_across(pipeline, sink.url(path), "cancel")

    # A cancel stops what has not started; the run it leaves is ended (see below).
    assert again.verdict == "lost-cancelled"
    assert sink.hits_for(path) == []


async def test_a_pause_still_applies_when_the_stored_spec_no_longer_validates(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    """The ended version's run template is kept for owed instants popped again; a stored spec
    that no longer validates (an older schema) keeps none, and the pause applies regardless."""
    job_id = await pipeline.create({"type": "interval", "every_seconds": 60}, sink.url(path))
    await pipeline.pg.execute("UPDATE jobs SET spec = spec - 'target' WHERE job_id = $1", job_id)
    await pipeline.send(pipeline.command(job_id, "pause"))
    assert (await pipeline.job(job_id))["state"] == "paused"
    assert await pipeline.due.redis.hkeys(pipeline.due.until_key(job_id)) == [b"1"]


async def _lost_mid_call(pipeline: Pipeline, url: str, *, started: bool) -> tuple[str, int, Popped]:
    """A one-shot firing is dispatched (recorded `queued`) and claimed by an executor which,
    if `started`, starts it at its instant (recorded `running`) and then dies mid-call: its
    300 ms lease is never renewed. Returns (job id, instant, the pop)."""
    due = now_ms() + 1000
    job_id = await pipeline.create({"type": "once", "at": _at(due)}, url)
    await _sleep_until(due - 100)
    [popped] = await pipeline.pop()
    assert popped.verdict == "run" and popped.entry is not None
    values = run_request(popped, utcnow())
    pipeline.executor.sent.append(queued_status(values))
    req = RunRequested.model_validate_json(run_request_json(values))
    executor = pipeline.executor.id
    assert await pipeline.due.claim(popped.entry, popped.member, executor, now_ms(), 300) == "ok"
    if started:
        await _sleep_until(due)
        verdict = await pipeline.due.start(popped.entry, "allow", now_ms(), executor, popped.member)
        assert verdict.kind == "ok"
        pipeline.executor.sent.append(pipeline.executor.status_event(
            req, "running", started_at=utcnow(), lateness_ms=0))
    await pipeline.persist()
    [run] = await pipeline.runs(job_id)
    assert run["status"] == ("running" if started else "queued")
    return job_id, due, popped


@pytest.mark.parametrize("started", [True, False], ids=["running", "queued"])
async def test_a_run_whose_executor_was_lost_ends_cancelled_when_the_job_is_cancelled_first(
    pipeline: Pipeline, sink: Sink, path: str, started: bool,
) -> None:
    """Its executor died mid-call; the job was cancelled before the lease sweep put the attempt
    back. The pop drops the entry (nothing may call again) and the run ends `cancelled`, saying
    what happened, instead of staying `running` (or `queued`) for ever."""
    job_id, due, popped = await _lost_mid_call(pipeline, sink.url(path), started=started)
    await _sleep_until(now_ms() + 400)  # the lease lapses unrenewed
    await pipeline.send(pipeline.command(job_id, "cancel"))
    assert await pipeline.due.requeue_expired_leases(0, now_ms()) == 1
    [again] = [p for p in await pipeline.pop(lookahead_ms=0) if p.member == popped.member]

    assert again.verdict == "lost-cancelled"
    await pipeline.persist()
    [run] = await pipeline.runs(job_id)
    assert (run["run_id"], run["attempt"], run["status"], run["final"]) == (
        run_id_for(job_id, due), 1, "cancelled", True)
    assert run["finished_at"] is not None
    for words in ("executor running attempt 1 was lost", "job was cancelled before",
                  "whether the call was made is unknown"):
        assert words in run["error"]
    assert sink.hits_for(path) == []
    assert (await pipeline.job(job_id))["state"] == "cancelled"
    assert await pipeline.due.redis.hlen(pipeline.due.key("lost", 0)) == 0  # the mark left too


async def test_a_fresh_firing_of_a_cancelled_job_is_dropped_without_a_run(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    """Only an attempt the lease sweep put back is ended by the pop: a firing never claimed,
    dropped because its job was cancelled, leaves no run behind."""
    due = now_ms() + 500
    job_id = await pipeline.create({"type": "once", "at": _at(due)}, sink.url(path))
    await pipeline.send(pipeline.command(job_id, "cancel"))
    await _sleep_until(due)
    popped = [p for p in await pipeline.pop(lookahead_ms=0) if p.entry and p.entry.job_id == job_id]

    assert len(popped) == 1 and popped[0].verdict in ("stale", "cancelled")
    assert pipeline.statuses() == []
    await pipeline.persist()
    assert await pipeline.runs(job_id) == []
