"""The `duetime` command line against the stack, through the gateway: typer's runner in process,
and once in a real terminal (tmux) as a person would type it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from duetime.console.app import app
from duetime.console.client import NOT_FOUND, REJECTED, RUN_FAILED, USAGE
from tests.support.sink import Sink
from tests.support.stack import ROOT

pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
def cli_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DUETIME_URL", env["DUETIME_URL"])
    monkeypatch.setenv("DUETIME_API_KEY", env["DUETIME_API_KEY"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no profile of the machine's


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return result.output


def as_json(*args: str) -> object:
    return orjson.loads(cli("-o", "json", *args))


async def acli(*args: str, code: int = 0) -> str:
    """In a thread: the sinks these jobs call answer from this test's event loop."""
    return await asyncio.to_thread(cli, *args, code=code)


async def ajson(*args: str) -> object:
    return orjson.loads(await acli("-o", "json", *args))


async def test_create_wait_inspect_change_and_cancel(sink: Sink, path: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    waited = await acli("jobs", "create", "--name", name, "--url", sink.url(path), "--now",
                        "--label", "team=cli", "--wait", "--timeout", "30")
    assert "succeeded" in waited
    assert len(sink.hits_for(path)) == 1
    made = await ajson("jobs", "create", "--name", name, "--url", sink.url(path),
                       "--every", "3600")
    assert isinstance(made, dict)
    job_id = made["job_id"]
    got = as_json("jobs", "get", job_id)
    assert isinstance(got, dict) and got["name"] == name
    listed = as_json("jobs", "list", "--name", name, "--all")
    assert isinstance(listed, list) and {j["name"] for j in listed} == {name}
    cli("jobs", "patch", job_id, "--set", "target.timeout_seconds=7")
    preview = as_json("jobs", "preview", job_id, "--count", "3")
    assert isinstance(preview, dict) and len(preview["next_run_times"]) == 3
    cli("jobs", "pause", job_id)
    cli("jobs", "resume", job_id)
    ran = await acli("jobs", "run", job_id, "--wait", "--timeout", "30")
    assert "succeeded" in ran
    runs = await ajson("jobs", "runs", job_id)
    assert isinstance(runs, list) and any(r["status"] == "succeeded" for r in runs)
    cli("jobs", "cancel", job_id)


async def test_a_job_file_in_yaml(sink: Sink, path: str, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: from-yaml\nschedule: {{type: now}}\n"
                    f"target: {{type: http, url: '{sink.url(path)}'}}\n")
    out = await acli("jobs", "create", "-f", str(spec), "--wait", "--timeout", "30")
    assert "succeeded" in out
    assert sink.hits_for(path)


def test_errors_end_with_meaningful_exit_codes(tmp_path: Path) -> None:
    missing = cli("jobs", "get", "0" * 32, code=NOT_FOUND)
    assert "Not found" in missing or "404" in missing
    invalid = cli("jobs", "create", "--url", "http://127.0.0.1:18999/x", "--cron",
                  "61 * * * *", code=REJECTED)
    assert "schedule" in invalid  # the field the 422 names
    cli("jobs", "create", "--url", "http://127.0.0.1:18999/x", code=USAGE)
    cli("--api-key", "not-a-key", "jobs", "list", code=REJECTED)
    cli("--profile", "nope", "jobs", "list", code=USAGE)
    cli("-o", "yaml", "jobs", "list", code=USAGE)


def test_a_failing_run_fails_the_wait(tmp_path: Path) -> None:
    # Port 18999 of the test range: nothing listens there; one attempt, so it fails for good.
    spec = tmp_path / "job.json"
    spec.write_bytes(orjson.dumps({
        "name": "fails", "schedule": {"type": "now"}, "retry": {"max_attempts": 1},
        "target": {"type": "http", "url": "http://127.0.0.1:18999/none"}}))
    out = cli("jobs", "create", "-f", str(spec), "--wait", "--timeout", "60", code=RUN_FAILED)
    assert "failed" in out


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_in_a_real_terminal(env: dict[str, str], tmp_path: Path) -> None:
    session = f"duetime-cli-{uuid.uuid4().hex[:6]}"
    done = tmp_path / "done"
    # COLUMNS unset: the width is the terminal's (pytest sets COLUMNS for its own output).
    command = (f"env -u COLUMNS -u LINES DUETIME_URL={env['DUETIME_URL']} "
               f"DUETIME_API_KEY={env['DUETIME_API_KEY']} "
               f"{ROOT}/.venv/bin/python -m duetime jobs list --limit 3; echo $? > {done}; sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command],
                   check=True, timeout=10)
    try:
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                capture_output=True, text=True, check=True, timeout=10).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, timeout=10)
    assert done.read_text().strip() == "0", screen
    assert "job_id" in screen and "state" in screen  # the table, as a person sees it
    assert "┏" in screen or "+" in screen


async def test_alerts_list(sink: Sink, tmp_path: Path) -> None:
    """A failed run is an alert; `alerts list` shows it, pages with --all, refuses bad input."""
    spec = tmp_path / "job.json"
    spec.write_bytes(orjson.dumps({
        "name": "alerting", "schedule": {"type": "now"}, "retry": {"max_attempts": 1},
        "target": {"type": "http", "url": "http://127.0.0.1:18999/none"}}))
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    made = await ajson("jobs", "create", "-f", str(spec))
    assert isinstance(made, dict)

    async def listed() -> list[dict[str, object]]:
        found = await ajson("alerts", "list", "--since", since, "--kind", "failure", "--limit",
                            "1", "--all")
        assert isinstance(found, list)
        return [a for a in found if a["job_id"] == made["job_id"]]

    deadline = time.monotonic() + 30
    while not (mine := await listed()) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert [a["kind"] for a in mine] == ["failure"]
    table = await acli("alerts", "list", "--since", since, "--kind", "failure")
    assert str(made["job_id"]) in table  # the runner's terminal is narrow: the id column shows
    bad = cli("alerts", "list", "--kind", "disaster", code=REJECTED)
    assert "kind" in bad
