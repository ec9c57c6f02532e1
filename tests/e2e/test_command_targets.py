"""Command targets through the gateway: what is stored, and hostile or boundary input refused
with a 422 naming the field (issue 9; ADR 0031). Nothing here needs the command executor."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.jobs import Cleanup

NUL = "\u0000"
LATER = {"type": "once", "at": "2099-01-01T00:00:00Z"}


def command_job(**target: Any) -> dict[str, Any]:
    return {"name": "cmd-e2e", "schedule": LATER,
            "target": {"type": "command", "command": ["sh", "-c", "echo hi"], **target}}


REFUSED = [
    ("target.command", {"command": []}),
    ("target.command", {"command": [""]}),
    ("target.command", {"command": "echo hi"}),  # argv, never a shell string
    ("target.command", {"command": ["echo", f"a{NUL}b"]}),
    ("target.command", {"command": ["x"] * 4097}),
    ("target.env", {"env": {"A": f"x{NUL}"}}),
    ("target.env", {"env": {"1A": "x"}}),
    ("target.env", {"env": {"A=B": "x"}}),
    ("target.env", {"env": {"": "x"}}),
    ("target.env", {"env": {f"V{i}": "x" for i in range(257)}}),
    ("target.env", {"env": {"BIG": "x" * 32769}}),
    ("target.stdin", {"stdin": f"a{NUL}"}),
    ("target.files", {"files": {"../x": "y"}}),
    ("target.files", {"files": {"a/../../x": "y"}}),
    ("target.files", {"files": {"/etc/passwd": "y"}}),
    ("target.files", {"files": {"a//b": "y"}}),
    ("target.files", {"files": {"./a": "y"}}),
    ("target.files", {"files": {"": "y"}}),
    ("target.files", {"files": {f"a{NUL}": "y"}}),
    ("target.files", {"files": {f"f{i}": "" for i in range(1001)}}),
    ("target.working_dir", {"working_dir": "../x"}),
    ("target.working_dir", {"working_dir": "/tmp"}),
    ("target.working_dir", {"working_dir": "a/./b"}),
    ("target.timeout_seconds", {"timeout_seconds": 0}),
    ("target.timeout_seconds", {"timeout_seconds": -1}),
    ("target.timeout_seconds", {"timeout_seconds": 86401}),
    ("target.limits.memory_mb", {"limits": {"memory_mb": 0}}),
    ("target.limits.cpu_seconds", {"limits": {"cpu_seconds": 86401}}),
    ("target.limits.output_bytes", {"limits": {"output_bytes": 0}}),
    ("target.limits.processes", {"limits": {"processes": 1}}),  # not a limit a job sets
    ("target.shell", {"shell": True}),
    ("target.source.object", {"source": {"object": "../x"}}),
    ("target.source.object", {"source": {"object": "/etc/passwd"}}),
    ("target.source.object", {"source": {"object": "a//b"}}),
    ("target.source.object", {"source": {"object": ""}}),
    ("target.source.object", {"source": {"object": f"a{NUL}"}}),
    ("target.source.url", {"source": {"object": "a", "url": "http://x"}}),
    ("target.network", {"network": "yes"}),
    ("target.network", {"network": 1}),
    ("target.network", {"network": None}),
    ("target.network", {"network": [True]}),
    ("target.network", {"network": {"allow": "*"}}),
    ("target", {"network": True, "limits": {"memory_mb": 31}}),
]


STEP = {"name": "build", "run": "make"}
REFUSED_STEPS = [
    ("target.steps", {"steps": []}),
    ("target.steps", {"steps": [STEP, STEP]}),  # names are unique
    ("target.steps", {"steps": [{"name": "../x", "run": "true"}]}),
    ("target.steps", {"steps": [{"name": "", "run": "true"}]}),
    ("target.steps", {"steps": [{"name": "a", "run": ""}]}),
    ("target.steps", {"steps": [{"name": "a", "run": f"true{NUL}"}]}),
    ("target.steps", {"steps": [{"name": "a"}]}),
    ("target.steps", {"steps": [{"name": f"s{i}", "run": "true"} for i in range(101)]}),
    ("target.steps", {"steps": "make"}),
    ("target.network", {"steps": [STEP], "network": "true"}),
    ("target", {"steps": [STEP], "network": True, "limits": {"memory_mb": 16}}),
    ("target.files", {"steps": [STEP], "files": {"../x": ""}}),
    ("target.command", {"steps": [STEP], "command": ["x"]}),  # steps, or a command: not both
]


@pytest.mark.parametrize(("field", "target"), REFUSED_STEPS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(REFUSED_STEPS)])
async def test_hostile_steps_targets_are_422_naming_the_field(
    api: httpx.AsyncClient, field: str, target: dict[str, Any],
) -> None:
    body = {"name": "steps-e2e", "schedule": LATER, "target": {"type": "steps", **target}}
    resp = await api.post("/jobs", json=body)
    assert resp.status_code == 422, resp.text
    assert any(e["field"].startswith(field) for e in resp.json()["errors"]), resp.json()


@pytest.mark.parametrize(("field", "target"), REFUSED,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(REFUSED)])
async def test_hostile_command_targets_are_422_naming_the_field(
    api: httpx.AsyncClient, field: str, target: dict[str, Any],
) -> None:
    resp = await api.post("/jobs", json=command_job(**target))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in resp.json()["errors"]), resp.json()


async def test_network_true_is_accepted_and_stored(api: httpx.AsyncClient, jobs: Cleanup) -> None:
    job_id = await jobs.create(api, command_job(network=True))
    resp = await api.get(f"/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["target"]["network"] is True


async def test_a_target_beyond_the_size_quota_is_422(api: httpx.AsyncClient) -> None:
    # Each file is within its own bounds; together they exceed the per-job payload quota.
    files = {f"f{i}": "x" * 30_000 for i in range(4)}
    resp = await api.post("/jobs", json=command_job(files=files))
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == ["target"]


async def test_a_command_job_is_stored_and_shown_as_sent(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    target = {"command": ["python3", "-c", "import sys; print(sys.stdin.read())"],
              "env": {"GREETING": "hello"}, "stdin": "input", "files": {"dir/a.txt": "A"},
              "working_dir": "dir", "timeout_seconds": 5,
              "limits": {"memory_mb": 256, "cpu_seconds": 5, "output_bytes": 1000}}
    job_id = await jobs.create(api, {**command_job(**target), "priority": 8})
    job = (await api.get(f"/jobs/{job_id}")).json()
    assert job["target"] == {"type": "command", "network": False, "source": None, **target}
    assert job["priority"] == 8
    listed = (await api.get("/jobs", params={"target_type": "command", "limit": 500})).json()
    assert job_id in [j["job_id"] for j in listed["items"]]


async def test_defaults_fill_a_minimal_command_target(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    job_id = await jobs.create(api, command_job())
    target = (await api.get(f"/jobs/{job_id}")).json()["target"]
    assert target == {"type": "command", "command": ["sh", "-c", "echo hi"], "env": {},
                      "source": None,
                      "stdin": None, "files": {}, "working_dir": "", "network": False,
                      "timeout_seconds": 60.0,
                      "limits": {"memory_mb": 512, "cpu_seconds": 60, "output_bytes": 10485760}}
