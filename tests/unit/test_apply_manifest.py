"""Jobs files for POST /jobs:apply (job_service/manifest.py, spec_diff.py): parsing within bounds,
seed 003's shorthand, and the field-level diff."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from duetime.problems import ProblemError
from job_service import manifest
from job_service.spec_diff import SHOWN_CHARS, diff
from schemas.api import JobSpec
from schemas.redaction import REDACTED

SEED_003 = b"""
jobs:
  - name: BuildAndTest
    schedule: "0 0 * * *"  # Every day at midnight
    run_once: false         # Run multiple times
    steps:
      - name: Set-up-Go
        run: go mod

      - name: Build
        run: go build -v ./...
  - name: NightlyCleanup
    schedule: "0 2 * * *"  # Every day at 2 AM
    run_once: true          # Run only once
    timeout_seconds: 120
    steps:
      - name: Cleanup
        run: ./cleanup_script.sh
"""


def refused(status: int, call: Any, *args: Any) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        call(*args)
    assert caught.value.status == status, caught.value.detail
    return caught.value


def test_seed_003s_file_becomes_steps_jobs_on_cron() -> None:
    items = manifest.items_of(manifest.parse(SEED_003, "yaml"))
    build, cleanup = (JobSpec.model_validate(manifest.spec_of(item)) for item in items)
    assert build.schedule.model_dump() == {"type": "cron", "expression": "0 0 * * *",
                                           "timezone": "UTC", "start_at": None, "end_at": None}
    assert build.target.type == "steps" and build.max_runs is None
    assert [s.name for s in build.target.steps] == ["Set-up-Go", "Build"]
    assert cleanup.max_runs == 1  # run_once: true
    assert cleanup.target.type == "steps" and cleanup.target.timeout_seconds == 120


def test_a_bare_list_in_json_and_full_specs_pass_through() -> None:
    spec = {"name": "n", "schedule": {"type": "interval", "every_seconds": 60},
            "target": {"type": "http", "url": "https://example.com/h"}, "priority": 7}
    [item] = manifest.items_of(manifest.parse(orjson.dumps([spec]), "json"))
    assert manifest.spec_of(item) == spec


def test_yaml_timestamps_stay_text_as_in_json() -> None:
    [item] = manifest.items_of(manifest.parse(
        b"- name: t\n  schedule: {type: once, at: 2030-01-02T03:04:05Z}\n"
        b"  target: {type: http, url: 'https://example.com/h'}\n", "yaml"))
    assert item["schedule"]["at"] == "2030-01-02T03:04:05Z"


@pytest.mark.parametrize("document", [
    # billion laughs: every level an alias of the one before
    b'a: &a ["lol","lol"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: &d [*c,*c]\njobs: [*d]\n',
    b"jobs:\n  - &job {name: x}\n  - *job\n",
    b"jobs:\n  - name: x\n    schedule: * * * * *\n",  # an unquoted cron: an alias to YAML
])
def test_anchors_and_aliases_are_refused(document: bytes) -> None:
    problem = refused(400, manifest.parse, document, "yaml")
    assert "anchors" in (problem.detail or "") or "alias" in (problem.detail or "")


@pytest.mark.parametrize("document, kind", [
    (b"jobs: [", "yaml"), (b"- {name: x\n", "yaml"), (b"{", "json"), (b"\xff\xfe", "yaml"),
    (b"a: 1\n---\nb: 2\n", "yaml"), (b"!!python/object/apply:os.system ['true']", "yaml"),
    (b"[" * 100 + b"]" * 100, "yaml"),
])
def test_malformed_documents_are_400(document: bytes, kind: str) -> None:
    refused(400, manifest.parse, document, kind)


@pytest.mark.parametrize("document, field", [
    ([], "jobs"), ({"jobs": []}, "jobs"), (None, "jobs"), ("text", "jobs"),
    ({"jobs": [{}], "kind": "x"}, "kind"), ([{"name": "x"}] * (manifest.MAX_ITEMS + 1), "jobs"),
])
def test_documents_that_are_no_list_of_jobs_are_422(document: Any, field: str) -> None:
    problem = refused(422, manifest.items_of, document)
    assert problem.errors and problem.errors[0]["field"] == field


def test_500_items_are_accepted() -> None:
    assert len(manifest.items_of([{"name": "x"}] * manifest.MAX_ITEMS)) == manifest.MAX_ITEMS


@pytest.mark.parametrize("item, field", [
    ("just text", ""), ([1, 2], ""),
    ({"name": "x", "run_once": "yes please", "schedule": "* * * * *"}, "run_once"),
    ({"name": "x", "run_once": True, "max_runs": 3, "schedule": "* * * * *"}, "run_once"),
    ({"name": "x", "steps": [], "command": ["true"]}, "command"),
    ({"name": "x", "steps": [], "target": {"type": "http"}}, "steps"),
    ({"name": "x", "timezone": "UTC", "schedule": {"type": "now"}}, "timezone"),
])
def test_items_that_cannot_be_expanded_name_their_field(item: Any, field: str) -> None:
    with pytest.raises(manifest.ItemInvalid) as caught:
        manifest.spec_of(item)
    assert caught.value.error.field == field


def test_media_types() -> None:
    assert manifest.media_type("application/yaml") == "yaml"
    assert manifest.media_type("text/yaml; charset=utf-8") == "yaml"
    assert manifest.media_type("application/json") == "json"
    for other in (None, "", "text/plain", "multipart/form-data"):
        refused(415, manifest.media_type, other)


def test_error_fields_are_as_the_item_spelled_them() -> None:
    short = {"name": "x", "schedule": "* * * * *", "steps": []}
    assert manifest.item_field("target.steps.0.run", short) == "steps.0.run"
    assert manifest.item_field("schedule.expression", short) == "schedule"
    full = {"name": "x", "schedule": {"type": "cron"}, "target": {}}
    assert manifest.item_field("target.url", full) == "target.url"


def test_the_diff_names_each_changed_leaf() -> None:
    before = {"name": "a", "priority": 5, "labels": {"team": "x"},
              "target": {"type": "steps", "steps": [{"name": "b", "run": "make"}],
                         "env": {"MODE": "1", "API_TOKEN": "old-secret"}}}
    after = {"name": "a", "priority": 9, "labels": {"team": "x", "tier": "1"},
             "target": {"type": "steps", "steps": [{"name": "b", "run": "make test"}],
                        "env": {"MODE": "1", "API_TOKEN": "new-secret"}}}
    changes = {c.path: (c.before, c.after) for c in diff(before, after)}
    assert changes == {
        "priority": (5, 9), "labels.tier": (None, "1"),
        "target.steps[0].run": ("make", "make test"),
        "target.env.API_TOKEN": (REDACTED, REDACTED),  # write-only: changed, never shown
    }
    assert diff(before, before) == []


def test_the_diff_cuts_long_strings_and_redacts_whole_header_objects() -> None:
    before = {"target": {"type": "http", "headers": {"Authorization": "Bearer s3cret"}}}
    after = {"target": {"type": "steps", "files": {"big.txt": "x" * 10_000}}}
    changes = {c.path: (c.before, c.after) for c in diff(before, after)}
    assert changes["target.headers"] == ({"Authorization": REDACTED}, None)
    assert changes["target.files"] == (None, {"big.txt": "x" * SHOWN_CHARS + "…"})
    lists = diff({"steps": [1, 2]}, {"steps": [1, 2, 3]})
    assert [(c.path, c.before, c.after) for c in lists] == [("steps", [1, 2], [1, 2, 3])]
