"""The reference model and its checker on hand-written histories: each promise it enforces
is shown failing on a history that breaks it."""

from __future__ import annotations

from tests.model.model import (
    Command,
    Hit,
    JobHistory,
    aborted_by_cancel,
    check,
    expect,
    lost_with_executor,
)

T0 = 1_800_000_000_000


def interval(every: int = 2, **extra: object) -> JobHistory:
    return JobHistory("j", "job", {"type": "interval", "every_seconds": every}, "/p/v0", T0,
                      **extra)  # type: ignore[arg-type]


def hit(at: int, path: str = "/p/v0", received: int | None = None, attempt: int = 1,
        run_id: str | None = None) -> Hit:
    rid = run_id or f"r{at}"
    return Hit(path, "job", rid, rid, at, attempt, at if received is None else received)


def test_an_undisturbed_interval_must_fire_at_every_instant_and_nowhere_else() -> None:
    job = interval()
    exp = expect(job, [], T0 + 6000)
    assert [(s.lo_ms, s.required) for s in exp.slots] == [(T0 + 2000, True), (T0 + 4000, True),
                                                           (T0 + 6000, True)]
    good = [hit(T0 + 2000), hit(T0 + 4000), hit(T0 + 6000)]
    assert check(job, exp, good).ok
    lost = check(job, exp, good[:2])
    assert [s.lo_ms for s in lost.lost] == [T0 + 6000]
    extra = check(job, exp, [*good, hit(T0 + 5000)])
    assert [h.scheduled_ms for h in extra.unexpected] == [T0 + 5000]
    early = check(job, exp, [hit(T0 + 2000, received=T0 + 1990), *good[1:]])
    assert len(early.early) == 1 and not early.ok


def test_nothing_may_fire_after_a_cancel_took_effect_and_the_edge_is_tolerated() -> None:
    job = interval(commands=[Command("cancel", T0 + 3950, T0 + 3955, applied_ms=T0 + 3960)])
    exp = expect(job, [], T0 + 10_000)
    assert [(s.lo_ms, s.required) for s in exp.slots] == [(T0 + 2000, True), (T0 + 4000, False)]
    assert check(job, exp, [hit(T0 + 2000), hit(T0 + 4000)]).ok  # inside the edit slack
    late = check(job, exp, [hit(T0 + 2000), hit(T0 + 6000)])
    assert [h.scheduled_ms for h in late.unexpected] == [T0 + 6000]
    assert exp.final_states == {"cancelled"}


def test_an_edit_moves_later_firings_to_the_new_target() -> None:
    job = interval(commands=[Command("patch", T0 + 2500, T0 + 2510, applied_ms=T0 + 2520,
                                     path="/p/v1")])
    exp = expect(job, [], T0 + 4000)
    assert check(job, exp, [hit(T0 + 2000), hit(T0 + 4000, "/p/v1")]).ok
    stale = check(job, exp, [hit(T0 + 2000), hit(T0 + 4000, "/p/v0")])
    assert stale.lost and stale.unexpected


def test_paused_firings_must_not_happen_and_run_now_must() -> None:
    job = interval(commands=[
        Command("pause", T0 + 1000, T0 + 1005, applied_ms=T0 + 1010),
        Command("run", T0 + 3000, T0 + 3004, applied_ms=T0 + 3006, run_id="manual"),
    ])
    exp = expect(job, [], T0 + 6000)
    assert check(job, exp, [hit(T0 + 3004, run_id="manual")]).ok
    assert check(job, exp, []).lost  # the run-now is owed
    assert check(job, exp, [hit(T0 + 3004, run_id="manual"), hit(T0 + 4000)]).unexpected
    assert exp.final_states == {"paused"}


def test_outages_excuse_recurring_firings_but_never_one_shot_ones() -> None:
    job = interval()
    exp = expect(job, [(T0 + 3000, T0 + 4500)], T0 + 10_000)
    assert {s.lo_ms: s.required for s in exp.slots}[T0 + 4000] is False
    once = JobHistory("o", "job", {"type": "delay", "seconds": 4}, "/p/v0", T0)
    exp = expect(once, [(T0 + 3000, T0 + 4500)], T0 + 10_000)
    assert [(s.lo_ms, s.required) for s in exp.slots] == [(T0 + 4000, True)]
    assert exp.final_states == {"completed"}


def test_a_one_shot_due_before_it_was_stored_is_judged_when_it_was_stored() -> None:
    job = JobHistory("o", "job", {"type": "once", "at": "2026-01-01T00:00:00Z"}, "/p/v0", T0,
                     commands=[Command("cancel", T0 + 5, T0 + 8, applied_ms=T0 + 12)],
                     applied_ms=T0 + 10)
    exp = expect(job, [], T0 + 10_000)
    assert [s.required for s in exp.slots] == [False]  # cancelled right after: it may have fired


def test_a_failed_first_attempt_must_be_retried_and_repeats_are_counted() -> None:
    job = interval(fail_first=True)
    exp = expect(job, [], T0 + 2000)
    assert check(job, exp, [hit(T0 + 2000), hit(T0 + 2000, attempt=2)]).ok
    assert check(job, exp, [hit(T0 + 2000)]).retry_missing
    twice = check(job, exp, [hit(T0 + 2000), hit(T0 + 2000), hit(T0 + 2000, attempt=2)])
    assert twice.ok and twice.duplicates == 1


def test_a_run_now_applied_late_is_still_owed_after_an_edit_but_not_after_a_cancel() -> None:
    edited = interval(commands=[
        Command("run", T0 + 100, T0 + 105, applied_ms=T0 + 9000, run_id="manual"),
        Command("patch", T0 + 2000, T0 + 2005, applied_ms=T0 + 9004, path="/p/v1"),
    ])
    assert [s.required for s in expect(edited, [], T0 + 1000).slots if s.run_id] == [True]
    cancelled = interval(commands=[
        Command("run", T0 + 100, T0 + 105, applied_ms=T0 + 9000, run_id="manual"),
        Command("cancel", T0 + 2000, T0 + 2005, applied_ms=T0 + 9004),
    ])
    assert [s.required for s in expect(cancelled, [], T0 + 1000).slots if s.run_id] == [False]


def test_a_command_may_win_over_a_firing_that_started_late_and_a_retry_may_follow_an_edit() -> None:
    job = interval(commands=[Command("cancel", T0 + 2300, T0 + 2305, applied_ms=T0 + 2310)])
    assert [s.required for s in expect(job, [], T0 + 4000).slots] == [False]  # 300 ms late
    edited = interval(commands=[Command("patch", T0 + 2800, T0 + 2805, applied_ms=T0 + 2810,
                                        path="/p/v1")])
    exp = expect(edited, [], T0 + 2000)
    assert check(edited, exp, [hit(T0 + 2000), hit(T0 + 2000, "/p/v1", attempt=2)]).ok
    assert check(edited, exp, [hit(T0 + 2000, "/p/v1")]).unexpected  # a first attempt may not


def test_a_job_stored_late_is_judged_from_when_the_writer_stored_it() -> None:
    job = interval(applied_ms=T0 + 9000,
                   commands=[Command("pause", T0 + 500, T0 + 505, applied_ms=T0 + 9002)])
    assert all(not s.required for s in expect(job, [], T0 + 8000).slots)


def test_a_cancel_may_stop_a_backlog_only_when_the_runs_say_it_judged_them_after_it() -> None:
    # Every-2-s job, 10 s behind: the cancel at +9.95 s finds +2, +4, +6 and +8 not started.
    job = interval(commands=[Command("cancel", T0 + 9950, T0 + 9955, applied_ms=T0 + 9960)])
    exp = expect(job, [], T0 + 12_000)
    owed = [T0 + 2000, T0 + 4000, T0 + 6000, T0 + 8000]
    assert [s.lo_ms for s in exp.slots if s.required] == owed
    assert [s.lo_ms for s in check(job, exp, []).lost] == owed  # no record: lost
    judged_after = {t: T0 + 9970 for t in owed}
    verdict = check(job, exp, [], judged_after)
    assert verdict.ok and verdict.cancelled_in_backlog == 4
    # Recorded cancelled before the cancel was even sent: a bug, not a backlog.
    judged_before = {**judged_after, T0 + 2000: T0 + 2001}
    assert [s.lo_ms for s in check(job, exp, [], judged_before).lost] == [T0 + 2000]


def test_a_call_lost_with_a_killed_executor_may_stay_unrecorded_only_after_a_cancel() -> None:
    kill = [(T0 + 5000, T0 + 7000)]  # SIGKILLed at +5 s, restarted by +7 s
    cancelled = interval(commands=[Command("cancel", T0 + 8000, T0 + 8010)])
    # Called at +4.9 s, the executor died before reporting, the cancel came before the lease
    # lapsed (+15 s): nothing may call again, so nothing can record the 200.
    assert lost_with_executor(cancelled, T0 + 4900, "running", kill)
    assert lost_with_executor(cancelled, T0 + 4900, None, kill)
    # Not excused: a run recorded as something else, a call long after the kill (a live
    # executor made it), no kill at all, or no cancel before the attempt was judged again.
    assert not lost_with_executor(cancelled, T0 + 4900, "failed", kill)
    assert not lost_with_executor(cancelled, T0 + 7500, "running", kill)
    assert not lost_with_executor(cancelled, T0 + 4900, "running", [])
    late = interval(commands=[Command("cancel", T0 + 16_000, T0 + 16_010)])
    assert not lost_with_executor(late, T0 + 4900, "running", kill)
    assert not lost_with_executor(interval(), T0 + 4900, "queued", kill)


def test_a_call_that_reached_the_sink_after_the_cancel_was_sent_may_be_cancelled() -> None:
    # 2026-11-27, seed 1: the cancel sent at +60,633 ms, the executor aborted the call, the
    # test process's loop took the request at +60,891 and answered 200 to a closed connection.
    job = interval(commands=[Command("cancel", T0 + 60_633, T0 + 60_641)])
    assert aborted_by_cancel(job, T0 + 60_891, "cancelled")
    assert aborted_by_cancel(job, T0 + 60_633, "cancelled")
    # Not excused: a call that got there before the cancel was sent, a run recorded as
    # anything but cancelled, or no cancel at all.
    assert not aborted_by_cancel(job, T0 + 60_632, "cancelled")
    assert not aborted_by_cancel(job, T0 + 60_891, "failed")
    assert not aborted_by_cancel(job, T0 + 60_891, None)
    assert not aborted_by_cancel(interval(), T0 + 60_891, "cancelled")
