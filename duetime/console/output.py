"""What the command line prints: tables for people, JSON for scripts (`--output json`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from schemas.events import alert_summary

JOB_COLUMNS = ("job_id", "name", "state", "schedule", "next_run_at", "run_count", "last_run")
RUN_COLUMNS = ("run_id", "job_id", "attempt", "status", "scheduled_at", "lateness_ms",
               "duration_ms", "http_status", "error")
ALERT_COLUMNS = ("at", "kind", "job_id", "run_id", "detail")
APPLY_COLUMNS = ("index", "name", "result", "job_id", "changes")
STEP_COLUMNS = ("name", "status", "exit_code", "duration_ms")


def _short(value: Any) -> str:
    return orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)


def changes_text(changes: Sequence[dict[str, Any]]) -> str:
    """One line per changed field: `path: from → to`."""
    return "\n".join(f"{c['path']}: {_short(c.get('from'))} → {_short(c.get('to'))}"
                     for c in changes)


def schedule_text(schedule: dict[str, Any]) -> str:
    kind = schedule.get("type")
    if kind == "cron":
        return f"cron {schedule.get('expression')} {schedule.get('timezone', 'UTC')}"
    if kind == "interval":
        return f"every {schedule.get('every_seconds')}s"
    if kind == "delay":
        return f"in {schedule.get('seconds')}s"
    if kind == "once":
        return f"at {schedule.get('at')}"
    return str(kind)


def cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if column == "schedule" and isinstance(value, dict):
        return schedule_text(value)
    if column == "detail" and isinstance(value, dict):
        return alert_summary(value)
    if column == "changes" and isinstance(value, list):
        return changes_text(value)
    if column == "last_run" and isinstance(value, dict):
        return f"{value.get('status')} {value.get('at') or ''}".strip()
    return "" if value is None else str(value)


class Printer:
    def __init__(self, as_json: bool, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console(soft_wrap=True)

    def json(self, value: Any) -> None:
        # Plain print: rich would re-wrap and color what scripts parse.
        print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())

    def rows(self, rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str) -> None:
        if self.as_json:
            self.json(list(rows))
            return
        table = Table(title=title, show_lines=False)
        for column in columns:
            # Ids are copied and pasted: never folded across lines.
            ids = column in ("job_id", "run_id")
            table.add_column(column, overflow="fold", no_wrap=ids, min_width=32 if ids else None)
        for row in rows:
            table.add_row(*(cell(row, c) for c in columns))
        self.console.print(table)

    def record(self, value: dict[str, Any], title: str) -> None:
        if self.as_json:
            self.json(value)
            return
        table = Table(title=title, show_header=False)
        table.add_column("field", style="cyan")
        table.add_column("value", overflow="fold")
        for key, item in value.items():
            text = item if isinstance(item, str) else orjson.dumps(item).decode()
            table.add_row(key, "" if item is None else text)
        self.console.print(table)

    def say(self, text: str) -> None:
        """A note for people: on stderr, so stdout stays the answer."""
        Console(stderr=True).print(text)
