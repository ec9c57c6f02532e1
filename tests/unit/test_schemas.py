from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from duetime import sql
from duetime.postgres import migration_files
from schemas.events import JobCommand
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
