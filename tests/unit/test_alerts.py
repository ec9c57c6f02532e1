"""Alerts without infrastructure (ADR 0033): what a status batch raises, the notification's
request, the job fields and the GET /alerts parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from duetime.problems import ProblemError
from duetime.webhook_signing import new_secret
from executor.notifications import payload, request_headers
from executor.signing import SigningKeys
from schemas.api import JobSpec, NotificationTarget
from schemas.events import AlertRaised, RunStatusChanged
from schemas.redaction import REDACTED, redact_spec, restore_spec
from search_service.filters import AlertsQuery, parse_query
from writer.alerts import alert_id, detect

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(run: str, status: str, minute: int, job: str = "j", **fields: Any) -> RunStatusChanged:
    return RunStatusChanged.model_validate({
        "run_id": run, "job_id": job, "tenant": "t", "attempt": 1, "status": status,
        "scheduled_at": T0 + timedelta(minutes=minute), "at": T0, **fields})


def changed(*events: RunStatusChanged, final: bool = True) -> list[dict[str, Any]]:
    return [{"run_id": e.run_id, "job_id": e.job_id, "status": e.status, "final": final}
            for e in events]


def found(previous: str | None, *events: RunStatusChanged, late_after: int | None = None,
          final: bool = True, previous_minute: int = -1) -> list[tuple[str, str | None]]:
    jobs = [{"job_id": "j", "previous_status": previous, "late_after_seconds": late_after,
             "previous_at": None if previous is None
             else T0 + timedelta(minutes=previous_minute)}]
    alerts = detect(jobs, changed(*events, final=final), {e.run_id: e for e in events})
    return [(a.kind, a.run_id) for a in alerts]


@pytest.mark.parametrize(("previous", "status", "expected"), [
    (None, "failed", [("failure", "r")]),
    (None, "timed_out", [("failure", "r")]),
    ("failed", "failed", [("failure", "r")]),
    ("failed", "succeeded", [("recovered", "r")]),
    ("timed_out", "succeeded", [("recovered", "r")]),
    ("succeeded", "succeeded", []),
    (None, "succeeded", []),
    ("cancelled", "succeeded", []),
    ("failed", "cancelled", []),
])
def test_an_outcome_after_the_previous_one(previous: str | None, status: str,
                                           expected: list[tuple[str, str]]) -> None:
    assert found(previous, ev("r", status, 0)) == expected


def test_runs_of_one_batch_are_taken_in_scheduled_order() -> None:
    assert found("succeeded", ev("b", "succeeded", 2), ev("a", "failed", 1)) == \
        [("failure", "a"), ("recovered", "b")]


def test_a_run_older_than_the_last_one_is_no_recovery_and_does_not_become_the_last() -> None:
    """Minute 5 failed and is the job's last run; minute 3's slow call then succeeds: no
    recovery (the job's latest outcome is still the failure); minute 6's success is one."""
    assert found("failed", ev("old", "succeeded", 3), previous_minute=5) == []
    assert found("failed", ev("old", "succeeded", 3), ev("new", "succeeded", 6),
                 previous_minute=5) == [("recovered", "new")]
    assert found("succeeded", ev("old", "failed", 3), ev("new", "succeeded", 6),
                 previous_minute=5) == [("failure", "old")]


def test_a_status_that_is_not_final_raises_nothing() -> None:
    assert found("failed", ev("r", "failed", 0), final=False) == []


@pytest.mark.parametrize(("lateness", "late_after", "late"), [
    (1001, 1, True), (1000, 1, False), (None, 1, False), (10**12, None, False),
])
def test_late_is_a_start_beyond_late_after_seconds(lateness: int | None, late_after: int | None,
                                                   late: bool) -> None:
    kinds = found(None, ev("r", "succeeded", 0, lateness_ms=lateness), late_after=late_after)
    assert kinds == ([("late", "r")] if late else [])


def test_a_job_without_a_finished_run_in_the_batch_raises_nothing() -> None:
    other = ev("x", "failed", 0, job="other")
    assert detect([{"job_id": "j", "previous_status": "failed", "late_after_seconds": None,
                    "previous_at": T0}],
                  changed(other), {"x": other}) == []


def test_alert_ids_are_stable_per_kind_and_run() -> None:
    assert alert_id("failure", "r") == alert_id("failure", "r")
    assert alert_id("failure", "r") != alert_id("late", "r") != alert_id("late", "s")


def _alert(**hook: Any) -> AlertRaised:
    return AlertRaised(alert_id="al_1", tenant="t", job_id="j", run_id="r", kind="failure",
                       at=T0, detail={"error": "HTTP 500"},
                       webhook=NotificationTarget(url="https://example.com/a", **hook))


def test_a_notification_is_signed_with_the_tenants_keys_over_its_body() -> None:
    secret = new_secret()
    keys = SigningKeys()
    keys.replace([{"tenant": "t", "secret": secret}])
    alert = _alert(headers={"X-Team": "ops", "X-Duetime-Run-Id": "forged", "Host": "evil"})
    assert alert.webhook is not None
    body = payload(alert)
    headers = request_headers(alert, alert.webhook, body, keys)
    Webhook(secret).verify(body, headers, json_parse=False)
    assert headers["webhook-id"] == headers["Idempotency-Key"] == "al_1"
    assert headers["X-Team"] == "ops"
    assert "Host" not in headers and "X-Duetime-Run-Id" not in headers
    assert b"webhook" not in body and b"example.com" not in body


def test_a_tenant_without_keys_gets_an_unsigned_notification() -> None:
    alert = _alert()
    assert alert.webhook is not None
    headers = request_headers(alert, alert.webhook, payload(alert), SigningKeys())
    assert "webhook-signature" not in headers and headers["Idempotency-Key"] == "al_1"


BASE = {"name": "n", "schedule": {"type": "now"},
        "target": {"type": "http", "url": "https://example.com/t"}}


def test_notification_headers_are_redacted_and_restored_like_the_targets() -> None:
    spec = JobSpec.model_validate({
        **BASE, "on_failure": {"url": "https://e.com/f", "headers": {"Authorization": "s1"}},
        "on_recovered": {"url": "https://e.com/r", "headers": {"X-Api-Token": "s2", "A": "b"}},
    }).model_dump(mode="json")
    shown = redact_spec(spec)
    assert shown["on_failure"]["headers"] == {"Authorization": REDACTED}
    assert shown["on_recovered"]["headers"] == {"X-Api-Token": REDACTED, "A": "b"}
    assert shown["on_late"] is None
    assert restore_spec(shown, spec) == spec
    with pytest.raises(ValueError, match="no stored value"):
        restore_spec(shown, {**spec, "on_failure": None})


@pytest.mark.parametrize("hook", [
    {"url": "https://e.com", "body": "x"}, {"url": "gopher://e.com"},
    {"url": "https://e.com", "method": "DELETE"}, {"url": "https://e.com", "timeout_seconds": 0},
    {"url": "https://e.com", "headers": {"a b": "c"}}, {"url": "https://e.com", "type": "kafka"},
])
def test_bad_notification_targets_are_refused(hook: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate({**BASE, "on_failure": hook})


def test_on_late_needs_late_after_seconds() -> None:
    with pytest.raises(ValidationError, match="late_after_seconds"):
        JobSpec.model_validate({**BASE, "on_late": {"url": "https://e.com"}})
    spec = JobSpec.model_validate({**BASE, "on_late": {"url": "https://e.com"},
                                   "late_after_seconds": 5})
    assert spec.late_after_seconds == 5


def test_alert_query_parameters() -> None:
    query = parse_query(AlertsQuery, [("since", "2026-11-22T10:00:00+01:00"), ("kind", "late"),
                                      ("limit", "7")])
    assert query.since == datetime(2026, 11, 22, 9, tzinfo=UTC)
    assert query.kind == "late" and query.limit == 7
    for bad in ([("kind", "failures")], [("since", "2026-11-22")], [("limit", "0")],
                [("kind", "late"), ("kind", "dlq")], [("status", "failed")]):
        with pytest.raises(ProblemError) as err:
            parse_query(AlertsQuery, bad)
        assert err.value.status == 422
