from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from duetime import sql
from duetime.postgres import migration_files
from executor.outcome import Outcome
from schemas.api import NUL, JobSpec
from schemas.events import JobCommand, RunStatusChanged
from schemas.export import OUT, render


def test_published_json_schemas_are_current() -> None:
    for filename, text in render().items():
        assert (OUT / filename).read_text() == text, f"run `make schemas`: {filename} is stale"
        assert json.loads(text)["type"] == "object"


def test_commands_need_what_their_type_needs() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError):
        JobCommand(command_id="c1", type="create", tenant="t", issued_at=now)
    with pytest.raises(ValidationError):
        JobCommand(command_id="c1", type="cancel", tenant="t", issued_at=now)
    with pytest.raises(ValidationError):
        JobCommand(command_id="bad id!", type="cancel", job_id="j", tenant="t", issued_at=now)
    ok = JobCommand(command_id="c1", type="cancel", job_id="j", tenant="t", issued_at=now)
    assert ok.schema_version == 1


def test_migrations_are_numbered_without_gaps() -> None:
    numbers = [n for n, _, _ in migration_files()]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("package", ["writer", "watcher", "search_service", "job_service"])
def test_sql_files_load_by_name(package: str) -> None:
    queries = sql.load_queries(package)
    assert queries and all(q.strip() for q in queries.values())


def _spec(**changes: Any) -> dict[str, Any]:
    return {"name": "n", "schedule": {"type": "once", "at": "2099-01-01T00:00:00Z"},
            "target": {"type": "http", "url": "http://example.com/"}, **changes}


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"name": "a\x00"}, "name", "NUL"),
    ({"payload": {"a": ["\ud800"]}}, "payload", "lone surrogates"),
    ({"payload": {"a": float("nan")}}, "payload", "finite"),
    ({"payload": {"a": -(2**63) - 1}}, "payload", "64 bits"),
    ({"payload": orjson.loads("[" * 65 + "]" * 65)}, "payload", "nested"),
    ({"schedule": {"type": "once", "at": "1969-12-31T23:59:59.999Z"}}, "schedule", "1970"),
    ({"schedule": {"type": "once", "at": "9000-01-01T00:00:00Z"}}, "schedule", "9000"),
])
def test_specs_refuse_what_cannot_be_stored(changes: dict[str, Any], field: str,
                                            message: str) -> None:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(_spec(**changes))
    error = info.value.errors()[0]
    assert error["loc"][0] == field and message in error["msg"]


@pytest.mark.parametrize("changes", [
    {"schedule": {"type": "once", "at": "2000-01-01T00:00:00Z"}},  # fires at once (API.md)
    {"schedule": {"type": "once", "at": "1970-01-01T00:00:00Z"}},
    {"schedule": {"type": "once", "at": "8999-12-31T23:59:59Z"}},
    {"payload": {"max": 2**63 - 1, "min": -(2**63), "text": "tab\t\u00e9\U0001f600"}},
    {"max_runs": 2**63 - 1},
])
def test_extreme_but_storable_specs_are_valid(changes: dict[str, Any]) -> None:
    JobSpec.model_validate(_spec(**changes))


def test_a_command_patch_with_a_nul_is_invalid() -> None:
    with pytest.raises(ValidationError):
        JobCommand(command_id="c1", type="patch", job_id="j", tenant="t",
                   issued_at=datetime.now(UTC), patch={"name": "x\x00"})


def _status(**fields: Any) -> RunStatusChanged:
    return RunStatusChanged.model_validate({
        "run_id": "r", "job_id": "j", "tenant": "t", "scheduled_at": "2026-01-01T00:00:00Z",
        "attempt": 1, "status": "failed", "at": "2026-01-01T00:00:00Z", **fields})


def test_run_status_free_text_is_made_storable_and_ids_are_not() -> None:
    event = _status(error="a\x00b", response_excerpt="\x00PNG", reason="x\x00",
                    lateness_ms=850_000_000_000)
    assert (event.error, event.response_excerpt, event.reason) == ("a\ufffdb", "\ufffdPNG",
                                                                   "x\ufffd")
    for bad in ({"run_id": "r\x00"}, {"attempt": 2**31}, {"lateness_ms": 2**63},
                {"http_status": 1000}):
        with pytest.raises(ValidationError):
            _status(**bad)


def test_an_outcome_never_carries_a_nul() -> None:
    outcome = Outcome("failed", 200, "bad\x00", "\x00\x01", "r\x00")
    assert NUL not in f"{outcome.error}{outcome.excerpt}{outcome.reason}"
    assert outcome.excerpt == "\ufffd\x01"
