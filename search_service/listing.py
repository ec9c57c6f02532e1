"""Which prepared query answers a listing, with which bound arguments, and how rows become a page.

Pure functions: no I/O, so the mapping from query parameters to SQL arguments is unit-tested.
User input only ever becomes bound arguments; the sort picks one of a fixed set of queries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from schemas.events import JOB_STATES, RUN_STATUSES
from search_service import cursors
from search_service.cursors import INFINITY, CursorKey, KeyKind
from search_service.filters import AlertsQuery, JobSort, JobsQuery, RunsQuery
from search_service.views import Row, alert_view, job_view, run_view


@dataclass(frozen=True)
class Sort:
    query: str  # the name of its query in queries.sql
    column: str  # the row's sort key, after job_id breaks ties
    kind: KeyKind
    # Its query when a label filter is given, if another shape serves that better (ADR 0046).
    labelled: str | None = None


SORTS: dict[JobSort, Sort] = {
    "created_at_desc": Sort("list_jobs_created_desc", "created_at", "time",
                            "list_jobs_created_desc_labelled"),
    "created_at_asc": Sort("list_jobs_created_asc", "created_at", "time",
                           "list_jobs_created_asc_labelled"),
    "next_run_at_asc": Sort("list_jobs_next_run_asc", "next_run_at", "time"),
    "name_asc": Sort("list_jobs_name_asc", "name", "text"),
}


@dataclass(frozen=True)
class Statement:
    query: str
    args: tuple[Any, ...]


def like_pattern(q: str) -> str:
    """An ILIKE pattern matching `q` anywhere, with LIKE's wildcards in `q` taken literally."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# pg_trgm indexes words of letters and digits; conservatively, ASCII ones.
_TRIGRAM = re.compile(r"[A-Za-z0-9]{3}")


def substring_args(q: str | None) -> tuple[str | None, str | None]:
    """($4, $15) of the job listings: q as an indexable ILIKE pattern, or as a plain substring."""
    if q is None:
        return None, None
    if _TRIGRAM.search(q):
        return like_pattern(q), None
    return None, q


def _sort_key(row: Row, sort: Sort) -> CursorKey:
    key: CursorKey | None = row[sort.column]
    # Only next_run_at can be NULL: such jobs sort last, at infinity (see the query).
    return INFINITY if key is None else key


def jobs_statement(params: JobsQuery, tenant: str) -> Statement:
    sort = SORTS[params.sort]
    after = cursors.decode(params.cursor, params.sort, sort.kind)
    key, ident = after if after is not None else (None, None)
    labels = orjson.dumps(params.labels).decode() if params.label else None
    pattern, substring = substring_args(params.q)
    query = sort.labelled if labels is not None and sort.labelled else sort.query
    return Statement(query, (
        tenant, params.state, params.name, pattern, labels,
        params.schedule_type, params.target_type, params.next_run_before, params.next_run_after,
        params.created_after, params.created_before, key, ident, params.limit + 1, substring,
    ))


def jobs_page(rows: Sequence[Row], params: JobsQuery) -> dict[str, Any]:
    """The page for rows fetched with limit + 1: the extra row only says there is a next page."""
    items = [job_view(r) for r in rows[:params.limit]]
    next_cursor = None
    if len(rows) > params.limit:
        last = rows[params.limit - 1]
        next_cursor = cursors.encode(params.sort, _sort_key(last, SORTS[params.sort]),
                                     last["job_id"])
    return {"items": items, "next_cursor": next_cursor}


RUNS_LISTING = "runs"


def runs_statement(params: RunsQuery, tenant: str) -> Statement:
    after = cursors.decode(params.cursor, RUNS_LISTING, "time")
    key, ident = after if after is not None else (None, None)
    return Statement("list_runs", (tenant, params.status, params.job_id, params.since, key, ident,
                                   params.limit + 1))


def time_keyed_page(rows: Sequence[Row], limit: int, view: Callable[[Row], dict[str, Any]],
                    listing: str, key: str, ident: str) -> dict[str, Any]:
    """The page of a listing sorted by (time `key`, `ident`) descending, for rows fetched with
    limit + 1: the extra row only says there is a next page."""
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = cursors.encode(listing, last[key], last[ident])
    return {"items": [view(r) for r in rows[:limit]], "next_cursor": next_cursor}


def runs_page(rows: Sequence[Row], params: RunsQuery) -> dict[str, Any]:
    return time_keyed_page(rows, params.limit, run_view, RUNS_LISTING, "modified_at", "run_id")


ALERTS_LISTING = "alerts"


def alerts_statement(params: AlertsQuery, tenant: str) -> Statement:
    after = cursors.decode(params.cursor, ALERTS_LISTING, "time")
    key, ident = after if after is not None else (None, None)
    return Statement("list_alerts", (tenant, params.kind, params.since, key, ident,
                                     params.limit + 1))


def alerts_page(rows: Sequence[Row], params: AlertsQuery) -> dict[str, Any]:
    return time_keyed_page(rows, params.limit, alert_view, ALERTS_LISTING, "at", "alert_id")


def stats_windows(now: datetime) -> tuple[datetime, datetime]:
    """(an hour ago, a day ago): the windows of GET /stats."""
    return now - timedelta(hours=1), now - timedelta(days=1)


def _rate(ok: int, done: int) -> float | None:
    return None if done == 0 else ok / done


def stats_view(job_counts: Sequence[Row], run_counts: Sequence[Row], metrics: Row) -> dict[str, Any]:
    jobs = dict.fromkeys(JOB_STATES, 0)
    jobs.update({r["state"]: r["n"] for r in job_counts})
    last_hour = dict.fromkeys(RUN_STATUSES, 0)
    last_day = dict.fromkeys(RUN_STATUSES, 0)
    for r in run_counts:
        last_hour[r["status"]] = r["last_hour"]
        last_day[r["status"]] = r["last_day"]
    return {
        "jobs": jobs,
        "runs": {"last_hour": last_hour, "last_day": last_day},
        "success_rate": {"last_hour": _rate(metrics["ok_hour"], metrics["done_hour"]),
                         "last_day": _rate(metrics["ok_day"], metrics["done_day"])},
        "lateness_ms": {"p50": metrics["lateness_p50"], "p99": metrics["lateness_p99"]},
        "mean_duration_ms": metrics["mean_duration_ms"],
    }
