"""Query parameters of the search listings: everything invalid is a 422 naming its field."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest

from duetime.problems import ProblemError
from search_service.filters import (
    JobsQuery,
    NoQuery,
    PreviewQuery,
    RunsQuery,
    openapi_parameters,
    parse_query,
)


def jobs(query: str) -> JobsQuery:
    return parse_query(JobsQuery, parse_qsl(query, keep_blank_values=True))


def fields_of(model: type[JobsQuery | RunsQuery | PreviewQuery | NoQuery], query: str) -> list[str]:
    with pytest.raises(ProblemError) as info:
        parse_query(model, parse_qsl(query, keep_blank_values=True))
    assert info.value.status == 422
    assert info.value.errors
    return [e["field"] for e in info.value.errors]


def test_defaults() -> None:
    p = jobs("")
    assert (p.limit, p.sort, p.cursor, p.label, p.labels) == (50, "created_at_desc", None, [], {})


def test_every_filter_parses() -> None:
    p = jobs("state=paused&name=n&q=Rep&label=team:data&label=env:prod&schedule_type=cron"
             "&target_type=kafka&next_run_before=2026-01-01T00:00:00Z"
             "&next_run_after=2025-01-01T01:00:00%2B01:00&created_after=2024-01-01T00:00:00Z"
             "&created_before=2027-01-01T00:00:00Z&sort=name_asc&limit=500")
    assert p.state == "paused" and p.name == "n" and p.q == "Rep"
    assert p.labels == {"team": "data", "env": "prod"}
    assert p.next_run_after == datetime(2025, 1, 1, tzinfo=UTC)
    assert p.next_run_after.tzinfo == UTC
    assert (p.schedule_type, p.target_type, p.sort, p.limit) == ("cron", "kafka", "name_asc", 500)


@pytest.mark.parametrize(("query", "wanted"), [
    ("next_run_after=2026-01-02T00:00:00Z&next_run_before=2026-01-01T00:00:00Z",
     ["next_run_after"]),
    ("next_run_after=2026-01-01T01:00:00%2B01:00&next_run_before=2026-01-01T00:00:00Z",
     ["next_run_after"]),  # the same instant: both bounds exclusive, nothing between
    ("created_after=2027-01-01T00:00:00Z&created_before=2026-01-01T00:00:00Z",
     ["created_after"]),
    ("created_after=2027-01-01T00:00:00Z&created_before=2026-01-01T00:00:00Z&limit=0",
     ["limit"]),  # a range is judged once each bound is valid
])
def test_a_range_that_matches_nothing_is_422_naming_its_start(query: str,
                                                              wanted: list[str]) -> None:
    assert fields_of(JobsQuery, query) == wanted


def test_a_range_of_one_millisecond_is_fine() -> None:
    p = jobs("next_run_after=2026-01-01T00:00:00Z&next_run_before=2026-01-01T00:00:00.001Z")
    assert p.next_run_before is not None and p.next_run_after is not None


def test_label_value_may_contain_colons_and_be_empty() -> None:
    assert jobs("label=url:http://x:80&label=empty:").labels == {"url": "http://x:80", "empty": ""}


def test_same_label_twice_is_fine_but_two_values_are_not() -> None:
    assert jobs("label=a:1&label=a:1").labels == {"a": "1"}
    assert fields_of(JobsQuery, "label=a:1&label=a:2") == ["label"]


def test_empty_q_and_cursor_mean_absent() -> None:
    p = jobs("q=&cursor=")
    assert p.q is None and p.cursor is None


@pytest.mark.parametrize(("query", "field"), [
    ("state=running", "state"),
    ("state=", "state"),
    ("name=", "name"),
    ("name=" + "x" * 201, "name"),
    ("name=a%00b", "name"),
    ("q=" + "x" * 201, "q"),
    ("q=%00", "q"),
    ("label=nocolon", "label"),
    ("label=:v", "label"),
    ("label=bad key:v", "label"),
    ("label=k:" + "v" * 256, "label"),
    ("label=" + "&label=".join(f"k{i}:v" for i in range(65)), "label"),
    ("schedule_type=weekly", "schedule_type"),
    ("target_type=smtp", "target_type"),
    ("next_run_before=tomorrow", "next_run_before"),
    ("next_run_after=2026-01-01", "next_run_after"),
    ("created_after=2026-01-01T00:00:00", "created_after"),
    ("created_before=2026-01-01T00:00:00 01:00", "created_before"),
    ("created_before=0001-01-01T00:00:00%2B05:00", "created_before"),
    ("created_before=1700000000", "created_before"),
    ("sort=created_at", "sort"),
    ("sort=-created_at", "sort"),
    ("sort=name_asc;DROP TABLE jobs", "sort"),
    ("limit=0", "limit"),
    ("limit=-1", "limit"),
    ("limit=501", "limit"),
    ("limit=99999999999999999999999999", "limit"),
    ("limit=abc", "limit"),
    ("limit=1.5", "limit"),
    ("limit=", "limit"),
    ("cursor=" + "x" * 3000, "cursor"),
    ("stat=paused", "stat"),
])
def test_invalid_values_name_their_field(query: str, field: str) -> None:
    assert field in fields_of(JobsQuery, query)


def test_repeating_a_single_valued_parameter_is_refused() -> None:
    for name, value in (("limit", "5"), ("state", "active"), ("sort", "name_asc"), ("q", "x"),
                        ("cursor", "abc")):
        assert fields_of(JobsQuery, f"{name}={value}&{name}={value}") == [name]


def test_all_problems_are_reported_at_once() -> None:
    assert sorted(fields_of(JobsQuery, "state=x&limit=0&sort=y&bogus=1")) == \
        ["bogus", "limit", "sort", "state"]


def test_hostile_parameter_names_are_truncated_in_errors() -> None:
    fields = fields_of(JobsQuery, "x" * 5000 + "=1")
    assert len(fields[0]) <= 64


def test_runs_and_preview_and_stats_parameters() -> None:
    p = parse_query(RunsQuery, [("status", "failed"), ("job_id", "j1"),
                                ("since", "2026-01-01T00:00:00Z")])
    assert (p.status, p.job_id, p.since) == ("failed", "j1", datetime(2026, 1, 1, tzinfo=UTC))
    assert fields_of(RunsQuery, "status=bogus") == ["status"]
    assert fields_of(RunsQuery, "job_id=") == ["job_id"]
    assert fields_of(RunsQuery, "since=yesterday") == ["since"]
    assert fields_of(RunsQuery, "label=a:b") == ["label"]
    assert parse_query(PreviewQuery, []).count == 10
    assert parse_query(PreviewQuery, [("count", "1000")]).count == 1000
    for bad in ("count=0", "count=1001", "count=x", "count=1&count=2"):
        assert fields_of(PreviewQuery, bad) == ["count"]
    assert fields_of(NoQuery, "window=1h") == ["window"]


def test_every_query_parameter_is_documented_as_it_is_parsed() -> None:
    for model in (JobsQuery, RunsQuery, PreviewQuery):
        documented = {p["name"]: p for p in openapi_parameters(model)}
        assert set(documented) == set(model.model_fields), model
        for parameter in documented.values():
            assert parameter["in"] == "query" and not parameter["required"]
            assert "null" not in str(parameter["schema"]), parameter  # absent, never null
    label = {p["name"]: p for p in openapi_parameters(JobsQuery)}["label"]
    assert label["schema"]["type"] == "array" and label["explode"]  # ?label=a:1&label=b:2
