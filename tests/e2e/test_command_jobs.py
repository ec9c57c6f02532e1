"""Command jobs through the whole pipeline (issue 9, ADR 0031): created at the gateway, fired on
schedule by the dispatcher into a priority lane, run by the command executor in its sandbox,
statuses in the run history, output read back through the gateway.

Needs the command executor (`DUETIME_COMMAND_EXECUTOR=1 make up`, or started here).
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from duetime.objects.filesystem import FilesystemStore
from schemas.topics import COMMAND_LANES, COMMAND_RUNS, RUNS_DLQ, RUNS_STATUS
from tests.support.commands import RUN_DIR, Concurrency, command_executor, processes_with
from tests.support.jobs import Cleanup, runs, wait_runs
from tests.support.kafka import find_messages, kafka_settings
from tests.support.stack import ROOT, stack
from tests.support.waiting import eventually

# Alone (ADR 0053): its module starts the stack's command executor and stops it after, which
# would pull it from under another process's command-job tests.
pytestmark = pytest.mark.alone


@pytest.fixture(autouse=True)
async def executor() -> AsyncIterator[None]:
    async with command_executor():
        yield


def command_job(command: list[str], schedule: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    target = {"type": "command", "command": command, **extra.pop("target", {})}
    return {"name": "cmd-e2e", "schedule": schedule or {"type": "now"}, "target": target,
            "retry": {"max_attempts": 1}, **extra}


async def output(api: httpx.AsyncClient, path: str, **headers: str) -> httpx.Response:
    return await api.get(path, headers=headers)


async def test_a_command_job_fires_on_schedule_and_its_output_is_kept(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    script = "import os, sys; print('hello', 6 * 7, os.getcwd(), sys.stdin.read())"
    job_id = await jobs.create(api, command_job(
        ["python3", "-c", script], {"type": "interval", "every_seconds": 2}, max_runs=2,
        target={"stdin": "from stdin"}))
    done = await wait_runs(api, job_id, "succeeded", count=2, timeout=40)
    expected = b"hello 42 /job from stdin\n"
    for run in done:
        assert (run["exit_code"], run["signal"]) == (0, None)
        assert (run["output_bytes"], run["output_truncated"]) == (len(expected), False)
        resp = await output(api, f"/runs/{run['run_id']}/output")
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        assert resp.content == expected
    # Two firings, one interval apart: on schedule, not both at once.
    starts = sorted(r["scheduled_at"] for r in done)
    assert starts[0] != starts[1]
    logs = await output(api, f"/jobs/{job_id}/logs")
    assert (logs.status_code, logs.content) == (200, expected)
    part = await output(api, f"/runs/{done[0]['run_id']}/output", Range="bytes=0-4")
    assert part.status_code == 206
    assert part.content == b"hello"
    assert part.headers["content-range"] == f"bytes 0-4/{len(expected)}"
    tail = await output(api, f"/runs/{done[0]['run_id']}/output", Range="bytes=-6")
    assert (tail.status_code, tail.content) == (206, b"stdin\n")
    past = await output(api, f"/runs/{done[0]['run_id']}/output", Range="bytes=999-")
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(expected)}"
    # Another tenant learns nothing: not the output, not that the run exists.
    for path in (f"/runs/{done[0]['run_id']}/output", f"/jobs/{job_id}/logs"):
        other = await output(api_b, path)
        assert other.status_code == 404, other.text


async def test_the_dashboard_shows_the_exit_code_and_links_the_output(
    env: dict[str, str], api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    """Issue 10's job page: a command run's exit code and a link to its output, read through
    the dashboard's session cookie; another tenant's cookie learns nothing."""
    job_id = await jobs.create(api, command_job(["sh", "-c", "echo '<b>out</b>'; exit 3"]))
    (run,) = await wait_runs(api, job_id, "failed", count=1, timeout=40)

    def browser(key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=env["DUETIME_URL"], cookies={"duetime_ui": key},
                                 timeout=30)

    async with browser(env["DUETIME_API_KEY"]) as ui, browser(env["DUETIME_API_KEY_B"]) as other:
        page = await ui.get(f"/ui/jobs/{job_id}")
        assert page.status_code == 200, page.text
        link = f'href="/ui/runs/{run["run_id"]}/output"'
        assert "exit 3" in page.text and link in page.text
        out = await ui.get(f"/ui/runs/{run['run_id']}/output")
        assert out.status_code == 200 and out.content == b"<b>out</b>\n"
        assert out.headers["content-type"].startswith("text/plain")  # never rendered as HTML
        assert out.headers["x-content-type-options"] == "nosniff"
        assert (await other.get(f"/ui/runs/{run['run_id']}/output")).status_code == 404
        assert (await other.get(f"/ui/jobs/{job_id}")).status_code == 404


async def test_exit_3_fails_and_is_retried_with_each_attempts_output(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    job_id = await jobs.create(api, command_job(
        ["sh", "-c", "echo failing; exit 3"],
        retry={"max_attempts": 2, "initial_delay_seconds": 1, "jitter": False}))
    [run] = await wait_runs(api, job_id, "failed", timeout=40)

    async def final() -> dict[str, Any] | None:
        [row] = await runs(api, job_id)
        return row if row["attempt"] == 2 and row["status"] == "failed" else None

    run = await eventually(final, timeout=30)
    assert (run["exit_code"], run["signal"]) == (3, None)
    assert "exited with code 3" in run["error"]
    for attempt in (1, 2):
        resp = await output(api, f"/runs/{run['run_id']}/output?attempt={attempt}")
        assert (resp.status_code, resp.content) == (200, b"failing\n")
    missing = await output(api, f"/runs/{run['run_id']}/output?attempt=3")
    assert missing.status_code == 404


async def test_a_timeout_is_timed_out_and_kills_the_process_tree(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    marker = f"run-of-{uuid.uuid4().hex}"
    script = f"sh -c 'sleep 300; true' {marker} & echo started; sleep 300; true"
    job_id = await jobs.create(api, command_job(["sh", "-c", script, marker],
                                                target={"timeout_seconds": 2}))
    await eventually(lambda: asyncio.to_thread(processes_with, marker), timeout=30)
    [run] = await wait_runs(api, job_id, "timed_out", timeout=40)
    assert run["exit_code"] is None
    assert "timed out" in run["error"]
    assert not await asyncio.to_thread(processes_with, marker)  # the child too
    resp = await output(api, f"/runs/{run['run_id']}/output")
    assert resp.content == b"started\n"


async def test_cancelling_the_job_kills_its_running_command(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    marker = f"run-of-{uuid.uuid4().hex}"
    job_id = await jobs.create(api, command_job(["sh", "-c", "sleep 300; true", marker],
                                                target={"timeout_seconds": 600}))
    await wait_runs(api, job_id, "running", timeout=30)
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 202
    [run] = await wait_runs(api, job_id, "cancelled", timeout=30)
    assert run["error"].startswith("job cancelled")
    assert not await asyncio.to_thread(processes_with, marker)


@pytest.mark.alone
async def test_overlap_forbid_holds_across_two_command_executors_and_a_kill(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    """Never twice at the same time (seed 003): the sandboxed processes themselves are watched,
    while a second executor shares the lanes and the one running the job is killed mid-run
    (its lease lapses and the other executor takes the attempt over)."""
    markers = [f"{uuid.uuid4().hex}" for _ in range(2)]
    async with command_executor("command_executor-2"), Concurrency(markers) as seen:
        ids = [await jobs.create(api, command_job(
            ["sh", "-c", "sleep 3; true", f"run-of-{m}"], {"type": "interval", "every_seconds": 1},
            overlap="forbid", target={"timeout_seconds": 30})) for m in markers]
        running = await wait_runs(api, ids[0], "running", timeout=30)
        victim = running[0]["executor_id"]
        instance = "command_executor-2" if victim.endswith(_pid_of("command_executor-2")) \
            else "command_executor"
        await asyncio.to_thread(stack, "kill", instance)
        try:
            # The killed attempt comes back through its lease and finishes elsewhere.
            async def taken_over() -> list[dict[str, Any]] | None:
                done = [r for r in await runs(api, ids[0], status="succeeded")
                        if r["executor_id"] != victim]
                return done or None

            await eventually(taken_over, timeout=60, interval=0.5)
        finally:
            await asyncio.to_thread(stack, "start", instance)
    assert seen.samples > 100
    assert seen.most == dict.fromkeys(markers, 1), seen.most
    for job_id in ids:
        assert await runs(api, job_id, status="skipped"), "the overlap was never tried"


def _pid_of(instance: str) -> str:
    return "-" + (RUN_DIR / f"{instance}.pid").read_text().split()[0]


async def test_a_high_priority_run_overtakes_queued_low_priority_ones(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    """Twelve low-priority builds fill the executor's four slots three times over; a
    high-priority run created after them starts in the next free slot, not behind them."""
    lows = [await jobs.create(api, command_job(["sh", "-c", "sleep 2"], priority=0))
            for _ in range(12)]
    await eventually(lambda: _started(api, lows, at_least=1), timeout=30)
    high = await jobs.create(api, command_job(["true"], priority=9))
    [high_run] = await wait_runs(api, high, "succeeded", timeout=60)
    low_starts = await eventually(lambda: _started(api, lows, at_least=12), timeout=60)
    before = [s for s in low_starts if s < high_run["started_at"]]
    # Four slots: the first wave, plus those of the wave the high run joins (up to three).
    assert len(before) <= 7, (high_run["started_at"], sorted(low_starts))


async def _started(api: httpx.AsyncClient, job_ids: list[str], at_least: int) -> list[str] | None:
    starts = [r["started_at"] for job_id in job_ids for r in await runs(api, job_id)
              if r["started_at"] is not None]
    return starts if len(starts) >= at_least else None


BAD_REQUESTS = [
    b"garbage",
    b"{}",
    b"\x00\xff" * 10,
    # A webhook's run request on a command lane: not a command target.
    orjson.dumps({"run_id": "r", "job_id": "j", "tenant": "dev", "job_version": 1,
                  "scheduled_at": "2026-01-01T00:00:00Z", "due_at": "2026-01-01T00:00:00Z",
                  "attempt": 1, "priority": 5, "retry": {}, "member": "m",
                  "dispatched_at": "2026-01-01T00:00:00Z",
                  "target": {"type": "http", "url": "http://127.0.0.1:9/"}}),
    # A command target the API would refuse: the executor refuses it too.
    orjson.dumps({"run_id": "r", "job_id": "j", "tenant": "dev", "job_version": 1,
                  "scheduled_at": "2026-01-01T00:00:00Z", "due_at": "2026-01-01T00:00:00Z",
                  "attempt": 1, "priority": 5, "retry": {}, "member": "m",
                  "dispatched_at": "2026-01-01T00:00:00Z",
                  "target": {"type": "command", "command": ["x"], "files": {"../x": ""}}}),
]
STATUS = {"run_id": "r", "job_id": "j", "tenant": "t", "attempt": 1, "status": "failed",
          "scheduled_at": "2026-01-01T00:00:00Z", "at": "2026-01-01T00:00:00Z"}
BAD_STATUSES = [orjson.dumps({**STATUS, **fields}) for fields in (
    {"exit_code": 2**40}, {"exit_code": 1.5}, {"signal": 999}, {"signal": -1},
    {"output_bytes": -5}, {"output_truncated": "maybe"})]


@pytest.mark.parametrize("lane", COMMAND_LANES)
async def test_bad_run_requests_on_a_lane_are_dead_lettered_and_commands_still_run(
    kafka_producer: AIOKafkaProducer, env: dict[str, str], api: httpx.AsyncClient,
    jobs: Cleanup, lane: str,
) -> None:
    marker = uuid.uuid4().hex
    for raw in BAD_REQUESTS:
        await kafka_producer.send_and_wait(COMMAND_RUNS[lane], raw, key=marker.encode())
    letters = await find_messages(kafka_settings(env), RUNS_DLQ,
                                  lambda m: m.get("key") == marker, count=len(BAD_REQUESTS))
    assert {m["source_topic"] for m in letters} == {COMMAND_RUNS[lane]}
    assert all("invalid command run request" in m["reason"] for m in letters)
    priority = {"high": 9, "normal": 5, "low": 0}[lane]
    job_id = await jobs.create(api, command_job(["true"], priority=priority))
    await wait_runs(api, job_id, "succeeded", timeout=30)


async def test_statuses_with_impossible_command_fields_are_dead_lettered(
    kafka_producer: AIOKafkaProducer, env: dict[str, str],
) -> None:
    marker = uuid.uuid4().hex
    for raw in BAD_STATUSES:
        await kafka_producer.send_and_wait(RUNS_STATUS, raw, key=marker.encode())
    letters = await find_messages(kafka_settings(env), RUNS_DLQ,
                                  lambda m: m.get("key") == marker, count=len(BAD_STATUSES))
    assert len(letters) == len(BAD_STATUSES)
    assert {m["source_topic"] for m in letters} == {RUNS_STATUS}


async def test_output_reads_refuse_hostile_input(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    job_id = await jobs.create(api, command_job(["echo", "0123456789"]))
    [run] = await wait_runs(api, job_id, "succeeded", timeout=30)
    path = f"/runs/{run['run_id']}/output"
    for query in ("?attempt=0", "?attempt=-1", "?attempt=x", f"?attempt={2**40}"):
        resp = await api.get(path + query)
        assert resp.status_code == 422, (query, resp.text)
        assert resp.json()["errors"][0]["field"] == "attempt"
    # nginx itself refuses some (400); the search service the rest.
    for unknown in ("x" * 65, "no-such-run", "%00", "..%2F..%2Fetc"):
        assert (await api.get(f"/runs/{unknown}/output")).status_code in (400, 404, 422)
    # Ranges this server does not serve are ignored (RFC 9110): the whole output.
    for header in ("bytes=abc", "bytes=5-1", "bytes=0-1,3-4", "items=0-1", "bytes=-",
                   f"bytes=0-{'9' * 30}"):
        resp = await api.get(path, headers={"Range": header})
        assert (resp.status_code, resp.content) == (200, b"0123456789\n"), header
    big_end = await api.get(path, headers={"Range": "bytes=5-99999999999"})
    assert (big_end.status_code, big_end.content) == (206, b"56789\n")
    assert (await api.get(path, headers={"Range": "bytes=-0"})).status_code == 416
    http_job = await jobs.create(api, {"name": "no-output", "schedule": {"type": "now"},
                                       "target": {"type": "http", "url": "http://127.0.0.1:9/"},
                                       "retry": {"max_attempts": 1}})
    await wait_runs(api, http_job, "failed", timeout=30)
    resp = await api.get(f"/jobs/{http_job}/logs")
    assert resp.status_code == 404
    assert "only command and steps runs keep output" in resp.json()["detail"]


async def test_steps_run_in_order_in_one_directory_and_stop_at_the_first_failure(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    steps = [{"name": "build", "run": "mkdir -p out\necho built > out/artifact\necho building"},
             {"name": "test", "run": "cat out/artifact\ntest -f out/artifact\necho tests passed"},
             {"name": "lint", "run": "echo linting\nfalse\necho never printed"},
             {"name": "deploy", "run": "echo deploying"}]
    job_id = await jobs.create(api, {"name": "steps-e2e", "schedule": {"type": "now"},
                                     "target": {"type": "steps", "steps": steps},
                                     "retry": {"max_attempts": 1}})
    [run] = await wait_runs(api, job_id, "failed", timeout=40)
    assert run["exit_code"] == 1
    assert [(s["name"], s["status"], s["exit_code"]) for s in run["steps"]] == [
        ("build", "succeeded", 0), ("test", "succeeded", 0), ("lint", "failed", 1),
        ("deploy", "skipped", None)]
    assert all(isinstance(s["duration_ms"], int) for s in run["steps"][:3])
    whole = b"building\nbuilt\ntests passed\nlinting\n"
    assert (run["output_bytes"], run["output_truncated"]) == (len(whole), False)
    path = f"/runs/{run['run_id']}/output"
    assert (await api.get(path)).content == whole
    for name, text in (("build", b"building\n"), ("test", b"built\ntests passed\n"),
                       ("lint", b"linting\n")):
        resp = await api.get(path, params={"step": name})
        assert (resp.status_code, resp.content) == (200, text), name
    assert (await api.get(path, params={"step": "deploy"})).status_code == 404  # never reached
    logs = await api.get(f"/jobs/{job_id}/logs", params={"step": "test"})
    assert logs.content == b"built\ntests passed\n"
    assert (await api_b.get(path, params={"step": "build"})).status_code == 404
    for bad in ("../x", "a/b", "", "x" * 65):
        resp = await api.get(path, params={"step": bad})
        assert resp.status_code == 422, bad
        assert resp.json()["errors"][0]["field"] == "step"


def _archive(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            archive.addfile(info)
    return buffer.getvalue()


async def _store(key: str, data: bytes) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    async with FilesystemStore(str(ROOT / ".stack" / "objects")) as store:
        await store.put(key, chunks())


async def test_a_script_from_the_object_store_runs_on_schedule(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    """Seed 001: the code is fetched from object storage; the archive is unpacked first."""
    folder = uuid.uuid4().hex
    await _store(f"dev/sources/{folder}/report.tar.gz", _archive({
        "report.py": b"from lib.helper import greet\nprint(greet())\n",
        "lib/__init__.py": b"", "lib/helper.py": b"def greet():\n    return 'report ok'\n"}))
    await _store(f"dev/sources/{folder}/hello.py", b"print('hello from the store')\n")
    archive_job = await jobs.create(api, command_job(
        ["python3", "report.py"], {"type": "interval", "every_seconds": 2}, max_runs=2,
        target={"source": {"object": f"{folder}/report.tar.gz"}}))
    single_job = await jobs.create(api, command_job(
        ["python3", "hello.py"], target={"source": {"object": f"{folder}/hello.py"}}))
    for job_id, text in ((archive_job, b"report ok\n"), (single_job, b"hello from the store\n")):
        done = await wait_runs(api, job_id, "succeeded", count=2 if job_id == archive_job else 1,
                               timeout=40)
        for run in done:
            assert (await api.get(f"/runs/{run['run_id']}/output")).content == text
    # Another tenant naming the same object finds nothing: sources are per tenant.
    other = await jobs.create(api_b, command_job(
        ["python3", "hello.py"], target={"source": {"object": f"{folder}/hello.py"}}))
    [run] = await wait_runs(api_b, other, "failed", timeout=40)
    assert "no object" in run["error"]


async def test_hostile_sources_fail_the_run_with_the_reason(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    folder = uuid.uuid4().hex
    await _store(f"dev/sources/{folder}/escape.tgz", _archive({"../evil": b"x"}))
    await _store(f"dev/sources/{folder}/link.tgz", _archive({"a": b"x"}, links=("shadow",)))
    await _store(f"dev/sources/{folder}/broken.tar", b"not an archive")
    await _store(f"dev/sources/{folder}/clash.py", b"")
    cases = [(f"{folder}/escape.tgz", {}, "relative path"),
             (f"{folder}/link.tgz", {}, "not a regular file"),
             (f"{folder}/broken.tar", {}, "not a readable archive"),
             (f"{folder}/missing.py", {}, "no object"),
             (f"{folder}/clash.py", {"files": {"clash.py": ""}}, "in the source too")]
    for obj, extra, reason in cases:
        job_id = await jobs.create(api, command_job(
            ["true"], target={"source": {"object": obj}, **extra}))
        [run] = await wait_runs(api, job_id, "failed", timeout=40)
        assert reason in run["error"], (obj, run["error"])
        assert run["attempt"] == 1  # refused for good, not retried


@pytest.mark.alone
async def test_a_command_running_at_sigterm_finishes_within_the_grace_period(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    job_id = await jobs.create(api, command_job(["sh", "-c", "sleep 4; echo finished"],
                                                target={"timeout_seconds": 60}))
    await wait_runs(api, job_id, "running", timeout=30)
    await asyncio.to_thread(stack, "stop", "command_executor")
    try:
        [run] = await wait_runs(api, job_id, "succeeded", timeout=30)
    finally:
        await asyncio.to_thread(stack, "start", "command_executor")
    assert run["attempt"] == 1
    assert (await api.get(f"/runs/{run['run_id']}/output")).content == b"finished\n"
