"""The dashboard's pure parts (search_service/ui): chart geometry, fire times with DST marked,
the session form's checks, and reading Prometheus's answers."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.requests import Request

from search_service.ui import charts, session
from search_service.ui.fire_times import fire_times
from search_service.ui.prometheus import PrometheusReader, parse_vector


def test_lateness_histogram_shows_every_bucket_and_scales_to_the_largest() -> None:
    chart = charts.lateness_histogram([{"bucket": 0, "n": 1}, {"bucket": 3, "n": 4},
                                       {"bucket": 99, "n": 2}])
    assert len(chart.bars) == len(charts.LATENESS_BOUNDS_MS) + 1
    assert chart.total == 7
    assert [b.value for b in chart.bars if b.value] == [1, 4, 2]
    assert chart.bars[3].height == chart.plot_height  # the largest fills the plot
    assert chart.bars[0].label == "early" and chart.bars[-1].label == "≥10s"
    assert chart.bars[3].label == "25-50" and chart.bars[8].label == "1s-2.5s"
    assert all(b.x + b.width <= chart.width for b in chart.bars)


def test_firings_over_time_has_a_bar_per_minute_with_failures_inside() -> None:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    rows = [{"minute": start + timedelta(minutes=2), "total": 10, "failed": 5}]
    chart = charts.firings_over_time(rows, start, 61)
    assert len(chart.bars) == 61 and chart.total == 10
    bar = chart.bars[2]
    assert bar.label == "10:02" and bar.failed == 5
    assert bar.failed_height == bar.height / 2
    assert chart.bars[0].height == 0


def test_an_empty_chart_draws_nothing_rather_than_dividing_by_zero() -> None:
    chart = charts.lateness_histogram([])
    assert chart.total == 0 and all(b.height == 0 for b in chart.bars)


def test_runs_timeline_places_runs_by_due_instant_oldest_left() -> None:
    runs = [{"scheduled_at": "2026-11-26T10:00:10+00:00", "status": "failed", "error": "HTTP 503"},
            {"scheduled_at": "2026-11-26T10:00:00+00:00", "status": "succeeded"},
            {"scheduled_at": "2026-11-26T10:00:05+00:00", "status": "skipped", "reason": "overlap"}]
    timeline = charts.runs_timeline(runs)
    assert [m.status for m in timeline.marks] == ["succeeded", "skipped", "failed"]
    xs = [m.x for m in timeline.marks]
    assert xs[0] < xs[1] < xs[2] and abs((xs[1] - xs[0]) - (xs[2] - xs[1])) < 1e-9
    assert timeline.marks[2].label.endswith("failed: HTTP 503")
    assert timeline.marks[1].label.endswith("(overlap)")
    assert charts.runs_timeline([]).marks == []


def test_fire_times_mark_the_change_to_summer_time() -> None:
    times = ["2026-03-28T02:00:00+00:00", "2026-03-29T01:00:00+00:00",
             "2026-03-30T01:00:00+00:00"]
    now = datetime(2026, 3, 27, tzinfo=UTC)
    fires = fire_times(times, "Europe/Berlin", now)
    assert [f.local[-8:] for f in fires] == ["03:00:00", "03:00:00", "03:00:00"]
    assert [f.dst_change for f in fires] == [None, "UTC+01:00 → UTC+02:00", None]


def test_fire_times_mark_a_change_between_now_and_the_first_firing() -> None:
    fires = fire_times(["2026-11-02T12:00:00+00:00"], "America/New_York",
                       datetime(2026, 10, 30, tzinfo=UTC))
    assert fires[0].dst_change == "UTC-04:00 → UTC-05:00"


def test_fire_times_in_utc_never_change() -> None:
    fires = fire_times(["2026-03-29T01:00:00+00:00"], "UTC", datetime(2026, 1, 1, tzinfo=UTC))
    assert fires[0].offset == "UTC+00:00" and fires[0].dst_change is None


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/ui/login", "headers": raw,
                    "scheme": "http", "server": ("127.0.0.1", 80), "query_string": b""})


@pytest.mark.parametrize(("headers", "same"), [
    ({"host": "dt.example", "origin": "http://dt.example"}, True),
    ({"host": "dt.example", "origin": "https://dt.example", "x-forwarded-proto": "https"}, True),
    ({"host": "dt.example", "origin": "http://dt.example", "x-forwarded-proto": "https"}, False),
    ({"host": "dt.example", "origin": "http://evil.example"}, False),
    ({"host": "dt.example", "origin": "null"}, False),
    ({"host": "dt.example", "referer": "http://dt.example/ui/login?x=1"}, True),
    ({"host": "dt.example", "referer": "http://dt.example.evil.example/ui/login"}, False),
    ({"host": "dt.example"}, False),
])
def test_same_origin(headers: dict[str, str], same: bool) -> None:
    assert session.same_origin(_request(headers)) is same


@pytest.mark.parametrize(("value", "goes_to"), [
    (None, "/ui/jobs"), ("", "/ui/jobs"), ("/ui/failures?window=day", "/ui/failures?window=day"),
    ("//evil.example/ui/", "/ui/jobs"), ("https://evil.example/ui/", "/ui/jobs"),
    ("/ui\\evil", "/ui/jobs"), ("/jobs", "/ui/jobs"), ("/ui/x y", "/ui/jobs"),
])
def test_safe_next(value: str | None, goes_to: str) -> None:
    assert session.safe_next(value) == goes_to


@pytest.mark.parametrize(("body", "message"), [
    (b"key=", "enter an API key"), (b"key=a%20b", "not an API key"),
    (b"key=a%3Bb", "not an API key"), (b"x" * 5000, "too large"), (b"key=\xff", "could not be read"),
])
def test_login_form_refusals(body: bytes, message: str) -> None:
    with pytest.raises(session.LoginRefused, match=message):
        session.checked_key(session.parse_form(body))


def test_login_form_takes_an_issued_key() -> None:
    assert session.checked_key(session.parse_form(b"key=+dtk_Ab-9_x+&next=/ui/")) == "dtk_Ab-9_x"


def _vector(*results: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(results)}}


def test_parse_vector_single_and_by_label() -> None:
    assert parse_vector(_vector({"metric": {}, "value": [1, "2.5"]}), None).value == 2.5
    assert parse_vector(_vector(), None).value is None
    lag = parse_vector(_vector({"metric": {"group": "w"}, "value": [1, "3"]},
                               {"metric": {"group": "e"}, "value": [1, "0"]}), "group")
    assert lag.series == {"w": 3.0, "e": 0.0}


@pytest.mark.parametrize("body", [
    {"status": "error", "error": "bad query"}, {"status": "success", "data": {"resultType": "matrix"}},
    "not json object", None,
])
def test_parse_vector_refuses_anything_else(body: Any) -> None:
    with pytest.raises(ValueError):
        parse_vector(body, None)


async def test_a_prometheus_that_does_not_answer_reads_as_none() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert await PrometheusReader(f"http://127.0.0.1:{port}").read() is None
