"""Shapes rows into the documented JSON (API.md, "Jobs (read side)")."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Protocol

from duetime import schedule
from duetime.problems import ProblemError
from duetime.timeutil import iso
from schemas.api import JobSpec
from schemas.redaction import redact_spec


class Row(Protocol):
    """A database row (asyncpg.Record), or a dict in tests."""

    def __getitem__(self, key: str, /) -> Any: ...


RUN_FIELDS = ("run_id", "job_id", "attempt", "status", "lateness_ms", "duration_ms",
              "http_status", "error", "executor_id", "reason", "response_excerpt")
# Command runs only (ADR 0031): shown when the run has them, so webhook runs look as before.
COMMAND_RUN_FIELDS = ("exit_code", "signal", "output_bytes", "output_truncated")
RUN_TIMES = ("scheduled_at", "queued_at", "started_at", "finished_at")


def _column(row: Row, name: str) -> Any:
    """A column that rows read before its migration (and test rows) may lack."""
    try:
        return row[name]
    except KeyError:
        return None


def run_view(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {k: row[k] for k in RUN_FIELDS}
    out.update({k: iso(row[k]) for k in RUN_TIMES})
    out["updated_at"] = iso(row["modified_at"])
    if _column(row, "output_bytes") is not None:
        out.update({k: row[k] for k in COMMAND_RUN_FIELDS})
    if _column(row, "steps") is not None:
        out["steps"] = row["steps"]
    return out


def alert_view(row: Row) -> dict[str, Any]:
    return {"alert_id": row["alert_id"], "kind": row["kind"], "at": iso(row["at"]),
            "job_id": row["job_id"], "run_id": row["run_id"], "detail": row["detail"]}


def job_view(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {"job_id": row["job_id"], **redact_spec(row["spec"])}
    out.update({
        "state": row["state"],
        "version": row["version"],
        "next_run_at": iso(row["next_run_at"]),
        "run_count": row["run_count"],
        "failure_count": row["failure_count"],
        "last_run": None if row["last_run_id"] is None else {
            "run_id": row["last_run_id"], "status": row["last_run_status"],
            "scheduled_at": iso(row["last_run_at"])},
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    })
    return out


def preview_view(row: Row, now: datetime, count: int) -> dict[str, Any]:
    """The job's next `count` fire times after `now`; none once it is cancelled or completed."""
    if row["state"] in ("cancelled", "completed"):
        return {"next_run_times": []}
    spec = JobSpec.model_validate(row["spec"])
    if spec.max_runs is not None:
        count = min(count, max(0, spec.max_runs - row["run_count"]))
    times = schedule.preview(spec, row["created_at"], now, count) if count else []
    return {"next_run_times": [iso(t) for t in times]}


def encode_cursor(at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime | None, str | None]:
    if not cursor:
        return None, None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, key = raw.split("|", 1)
        return datetime.fromisoformat(at), key
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(422, "Invalid request", "cursor is not valid",
                           [{"field": "cursor", "message": "not a cursor this API returned"}]) from exc
