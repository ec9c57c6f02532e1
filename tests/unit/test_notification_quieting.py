"""A job failing every second notifies at most once a minute per kind, and says how many it
held back (executor.notifications.Quieting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from executor.notifications import Quieting
from schemas.events import AlertKind, AlertRaised

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def alert(kind: AlertKind, seconds: float, job: str | None = "j", tenant: str = "t") -> AlertRaised:
    return AlertRaised(alert_id=f"al_{kind}{seconds}{job}", tenant=tenant, job_id=job,
                       run_id=None, kind=kind, at=T0 + timedelta(seconds=seconds),
                       detail={"status": "failed"})


def sent(q: Quieting, *alerts: AlertRaised) -> list[tuple[float, int | None]]:
    out = []
    for a in alerts:
        admitted = q.admit(a)
        if admitted is not None:
            out.append(((admitted.at - T0).total_seconds(), admitted.detail.get("suppressed")))
    return out


def test_one_failure_a_minute_then_the_count_held_back() -> None:
    q = Quieting(60)
    failures = [alert("failure", s) for s in range(0, 130)]  # every second for 130 s
    assert sent(q, *failures) == [(0, None), (60, 59), (120, 59)]


def test_kinds_jobs_and_tenants_are_quieted_apart_and_recoveries_always_go() -> None:
    q = Quieting(60)
    assert sent(q, alert("failure", 0), alert("late", 1), alert("failure", 2, job="k"),
                alert("failure", 3, tenant="u"), alert("failure", 4),
                alert("recovered", 5), alert("recovered", 6)) == \
        [(0, None), (1, None), (2, None), (3, None), (5, None), (6, None)]


def test_zero_sends_every_alert() -> None:
    assert len(sent(Quieting(0), *[alert("failure", s) for s in range(5)])) == 5


def test_the_table_is_bounded() -> None:
    q = Quieting(60)
    q.MAX_TRACKED = 10
    sent(q, *[alert("failure", s / 100, job=f"j{s}") for s in range(10)])
    # Full: an alert past every window makes room by forgetting the windows that passed.
    assert sent(q, alert("failure", 100, job="new")) == [(100, None)]
    assert len(q.last) == 1
