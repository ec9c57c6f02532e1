"""`duetime jobs|runs|stack …`: the API and the local stack from a terminal (docs/cli.md).

Service commands (`duetime run|migrate|topics|keys|logs`) stay in duetime/cli.py, which hands
everything else to this app.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from duetime import log_view
from duetime.console.client import (
    FAILED,
    RUN_FAILED,
    USAGE,
    Api,
    CliError,
    resolve,
)
from duetime.console.output import (
    ALERT_COLUMNS,
    APPLY_COLUMNS,
    JOB_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    Printer,
)
from duetime.console.specs import (
    jobs_file,
    labels_from,
    load_document,
    patch_from,
    schedule_from_flags,
)

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.sh"
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "skipped"}
T = TypeVar("T")

app = typer.Typer(name="duetime", no_args_is_help=True, add_completion=True,
                  help="duetime: schedule webhooks, Kafka messages and commands. Service commands: "
                       "duetime run|migrate|topics|keys|logs.")
jobs = typer.Typer(no_args_is_help=True, help="Create, inspect and change jobs.")
runs = typer.Typer(no_args_is_help=True, help="Runs across jobs.")
stack = typer.Typer(no_args_is_help=True, help="The local stack (deploy/local/stack.sh).")
alerts = typer.Typer(no_args_is_help=True,
                     help="Failures, late starts, recoveries and dead letters of your jobs.")
app.add_typer(jobs, name="jobs")
app.add_typer(runs, name="runs")
app.add_typer(stack, name="stack")
app.add_typer(alerts, name="alerts")


@dataclass
class Options:
    url: str | None
    api_key: str | None
    profile: str | None
    output: str

    def api(self) -> Api:
        return Api(resolve(self.url, self.api_key, self.profile))

    @property
    def printer(self) -> Printer:
        return Printer(self.output == "json")


@contextmanager
def handled() -> Iterator[None]:
    """A CliError ends the command with its message on stderr and its exit code."""
    try:
        yield
    except CliError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(exc.code) from exc


def _with_api(ctx: typer.Context, work: Callable[[Api, Printer], T]) -> T:
    options: Options = ctx.obj
    with handled():
        api = options.api()
        try:
            return work(api, options.printer)
        finally:
            api.close()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="API URL (env DUETIME_URL)")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key (env DUETIME_API_KEY)")] = None,
    profile: Annotated[str | None, typer.Option(
        help="a profile of ~/.config/duetime/profiles.toml (its url and api_key)")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    if output not in ("table", "json"):
        raise typer.BadParameter("table or json", param_hint="--output")
    ctx.obj = Options(url, api_key, profile, output)


# -- jobs -------------------------------------------------------------------------------------

def _spec(file: str | None, name: str | None, url: str | None, method: str, at: str | None,
          in_seconds: float | None, every: int | None, cron: str | None, tz: str, now: bool,
          label: list[str]) -> dict[str, Any]:
    if file is not None:
        spec = load_document(file)
        if not isinstance(spec, dict):
            raise CliError(f"{file} must hold one job (an object)", USAGE)
        return spec
    if url is None:
        raise CliError("give a job file (-f) or at least --url and a schedule", USAGE)
    return {"name": name or "job", "target": {"type": "http", "url": url, "method": method},
            "schedule": schedule_from_flags(at, in_seconds, every, cron, tz, now),
            "labels": labels_from(label)}


def finished(run: dict[str, Any]) -> bool:
    """A run with nothing more to come: a failed attempt with a retry planned is not."""
    return run["status"] in TERMINAL and not str(run.get("reason") or "").startswith("retry at")


def _wait_for_run(api: Api, job_id: str, timeout: float, after: int = 0) -> dict[str, Any]:
    """The job's first run past `after` finished runs, with a spinner while waiting."""
    console = Console(stderr=True)
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for a run of {job_id} …"):
        while time.monotonic() < deadline:
            found = api.call("GET", f"/jobs/{job_id}/runs", params={"limit": 100})["items"]
            done = [r for r in found if finished(r)]
            if len(done) > after:
                return dict(done[0])
            time.sleep(0.5)
    raise CliError(f"no run of {job_id} finished within {timeout:g}s", RUN_FAILED)


def _report_run(printer: Printer, run: dict[str, Any]) -> None:
    printer.record(run, f"run {run['run_id']}")
    if run["status"] != "succeeded":
        raise CliError(f"the run {run['status']}: {run.get('error') or run.get('reason')}",
                       RUN_FAILED)


@jobs.command("create")
def jobs_create(
    ctx: typer.Context,
    file: Annotated[str | None, typer.Option(
        "--file", "-f", help="a job spec, JSON or YAML; - for stdin")] = None,
    name: Annotated[str | None, typer.Option(help="job name (with --url)")] = None,
    url: Annotated[str | None, typer.Option(help="webhook URL")] = None,
    method: Annotated[str, typer.Option(help="HTTP method")] = "POST",
    at: Annotated[str | None, typer.Option(help="once, at this ISO 8601 instant")] = None,
    in_seconds: Annotated[float | None, typer.Option("--in", help="once, after N seconds")] = None,
    every: Annotated[int | None, typer.Option(help="every N seconds")] = None,
    cron: Annotated[str | None, typer.Option(help="a cron expression (5 or 6 fields)")] = None,
    tz: Annotated[str, typer.Option(help="time zone of --cron")] = "UTC",
    now: Annotated[bool, typer.Option("--now", help="once, right away")] = False,
    label: Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe create")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the first run and report it")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits")] = 120.0,
) -> None:
    """Create a job from a file or from flags; prints its id."""
    def work(api: Api, printer: Printer) -> None:
        spec = _spec(file, name, url, method, at, in_seconds, every, cron, tz, now, label or [])
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        accepted = api.call("POST", "/jobs", json=spec, headers=headers)
        printer.record(accepted, f"job {accepted['job_id']} accepted")
        if wait:
            _report_run(printer, _wait_for_run(api, accepted["job_id"], timeout))
    _with_api(ctx, work)


@jobs.command("get")
def jobs_get(ctx: typer.Context, job_id: str) -> None:
    """A job as stored (secret header values redacted)."""
    _with_api(ctx, lambda api, p: p.record(api.call("GET", f"/jobs/{job_id}"), f"job {job_id}"))


@jobs.command("list")
def jobs_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="active, paused, completed, cancelled")] = None,
    name: Annotated[str | None, typer.Option(help="exact name")] = None,
    q: Annotated[str | None, typer.Option(help="name contains")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key:value (repeatable)")] = None,
    sort: Annotated[str | None, typer.Option(help="e.g. next_run_at, -created_at")] = None,
    limit: Annotated[int, typer.Option(help="jobs per page")] = 50,
    all_pages: Annotated[bool, typer.Option("--all", help="follow every page")] = False,
) -> None:
    """Jobs of this tenant, newest first (the filters of GET /jobs)."""
    params: dict[str, Any] = {k: v for k, v in
                              {"state": state, "name": name, "q": q, "sort": sort,
                               "limit": limit}.items() if v is not None}
    if label:
        params["label"] = label

    _with_api(ctx, lambda api, printer: list_pages(api, printer, "/jobs", params, all_pages,
                                                   JOB_COLUMNS))


def list_pages(api: Api, printer: Printer, path: str, params: dict[str, Any], all_pages: bool,
               columns: tuple[str, ...]) -> None:
    """Print a keyset listing's first page, or every page with `all_pages` (a spinner while it
    pages), and how to get the next one."""
    found: list[dict[str, Any]] = []
    what = path.strip("/")
    with Console(stderr=True).status(f"listing {what} …") as status:
        while True:
            page = api.call("GET", path, params=params)
            found += page["items"]
            status.update(f"listing {what} … {len(found)}")
            cursor: str | None = page.get("next_cursor")
            if not all_pages or not cursor:
                break
            params = {**params, "cursor": cursor}
    printer.rows(found, columns, f"{len(found)} {what}")
    if cursor:
        printer.say(f"more: --all, or the next page's cursor {cursor}")


@jobs.command("edit")
def jobs_edit(ctx: typer.Context, job_id: str,
              file: Annotated[str, typer.Option("--file", "-f", help="the whole new spec")]) -> None:
    """Replace a job's spec (PUT)."""
    def work(api: Api, printer: Printer) -> None:
        printer.record(api.call("PUT", f"/jobs/{job_id}", json=load_document(file)),
                       f"job {job_id} edit accepted")
    _with_api(ctx, work)


@jobs.command("patch")
def jobs_patch(
    ctx: typer.Context, job_id: str,
    set_: Annotated[list[str] | None, typer.Option("--set", help="path=value (repeatable)")] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="a JSON merge patch")] = None,
) -> None:
    """Change some fields (JSON merge patch): --set target.timeout_seconds=10."""
    def work(api: Api, printer: Printer) -> None:
        if (file is None) == (not set_):
            raise CliError("give --set (repeatable) or -f, not both", USAGE)
        patch = load_document(file) if file is not None else patch_from(set_ or [])
        printer.record(api.call("PATCH", f"/jobs/{job_id}", json=patch),
                       f"job {job_id} patch accepted")
    _with_api(ctx, work)


def _command(verb: str, method: str, suffix: str) -> Callable[[typer.Context, str], None]:
    def command(ctx: typer.Context, job_id: str) -> None:
        _with_api(ctx, lambda api, p: p.record(api.call(method, f"/jobs/{job_id}{suffix}"),
                                               f"job {job_id} {verb} accepted"))
    command.__doc__ = f"{verb.capitalize()} a job."
    return command


jobs.command("cancel")(_command("cancel", "DELETE", ""))
jobs.command("pause")(_command("pause", "POST", "/pause"))
jobs.command("resume")(_command("resume", "POST", "/resume"))


@jobs.command("run")
def jobs_run(
    ctx: typer.Context, job_id: str,
    wait: Annotated[bool, typer.Option(help="wait for this run and report it")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits")] = 120.0,
) -> None:
    """Run a job now, once, besides its schedule."""
    def work(api: Api, printer: Printer) -> None:
        before = [r for r in api.call("GET", f"/jobs/{job_id}/runs",
                                      params={"limit": 100})["items"]
                  if finished(r)]
        accepted = api.call("POST", f"/jobs/{job_id}/run")
        printer.record(accepted, f"run {accepted['run_id']} accepted")
        if wait:
            _report_run(printer, _wait_for_run(api, job_id, timeout, after=len(before)))
    _with_api(ctx, work)


@jobs.command("preview")
def jobs_preview(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="a stored job")] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="a spec not created yet")] = None,
    count: Annotated[int, typer.Option(help="how many fire times")] = 10,
) -> None:
    """The next fire times of a job, or of a spec before creating it."""
    def work(api: Api, printer: Printer) -> None:
        if (job_id is None) == (file is None):
            raise CliError("give a job id or -f, not both", USAGE)
        found = api.call("GET", f"/jobs/{job_id}/preview", params={"count": count}) \
            if job_id else api.call("POST", "/jobs:preview", params={"count": count},
                                    json=load_document(file or "-"))
        times = found["next_run_times"]
        if printer.as_json:
            printer.json(found)
        else:
            printer.rows([{"#": i + 1, "at": t} for i, t in enumerate(times)], ("#", "at"),
                         "next fire times")
    _with_api(ctx, work)


@jobs.command("runs")
def jobs_runs(
    ctx: typer.Context, job_id: str,
    status: Annotated[str | None, typer.Option(help="only runs in this status")] = None,
    limit: Annotated[int, typer.Option(help="runs")] = 20,
) -> None:
    """A job's runs, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    _with_api(ctx, lambda api, p: p.rows(
        api.call("GET", f"/jobs/{job_id}/runs", params=params)["items"], RUN_COLUMNS,
        f"runs of {job_id}"))


# -- apply ------------------------------------------------------------------------------------

def _printer(ctx: typer.Context, output: str | None) -> Printer:
    """`-o` after the command wins over `duetime -o …` before it."""
    if output is None:
        printer: Printer = ctx.obj.printer
        return printer
    if output not in ("table", "json"):
        raise CliError("--output is table or json", USAGE)
    return Printer(output == "json")


OutputOption = Annotated[str | None, typer.Option("--output", "-o", help="table or json")]


@app.command("apply")
def apply_jobs(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="a jobs file, YAML or JSON; - for stdin")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="show what would change; change nothing")] = False,
    output: OutputOption = None,
) -> None:
    """Create or update the jobs of a file by name (POST /jobs:apply; seed 003's format too)."""
    def work(api: Api, _: Printer) -> None:
        printer = _printer(ctx, output)
        body, content_type, count = jobs_file(file)
        what = f"{count} jobs" if count is not None else "the jobs"
        with Console(stderr=True).status(f"{'checking' if dry_run else 'applying'} {what} of {file} …"):
            done = api.call_raw_json("POST", "/jobs:apply", body, content_type,
                                     params={"dry_run": "true"} if dry_run else None)
        if printer.as_json:
            printer.json(done)
            return
        title = ", ".join(f"{done[k]} {k}" for k in ("created", "updated", "unchanged"))
        printer.rows(done["items"], APPLY_COLUMNS,
                     f"dry run, nothing changed: {title}" if dry_run else title)
    _with_api(ctx, work)


# -- runs -------------------------------------------------------------------------------------

@runs.command("get")
def runs_get(ctx: typer.Context, run_id: str, output: OutputOption = None) -> None:
    """One run: its status, times, exit code and, for steps, each step's."""
    def work(api: Api, _: Printer) -> None:
        printer = _printer(ctx, output)
        run = api.call("GET", f"/runs/{urllib.parse.quote(run_id, safe='')}")
        printer.record({k: v for k, v in run.items() if k != "steps" or printer.as_json},
                       f"run {run_id}")
        if run.get("steps") and not printer.as_json:
            printer.rows(run["steps"], STEP_COLUMNS, "steps")
    _with_api(ctx, work)


@runs.command("output")
def runs_output(
    ctx: typer.Context, run_id: str,
    step: Annotated[str | None, typer.Option(help="one step's output")] = None,
    attempt: Annotated[int | None, typer.Option(help="an earlier attempt's (default: the last)")] = None,
) -> None:
    """What a command run wrote (stdout and stderr as written), as it was stored."""
    params = {k: v for k, v in {"step": step, "attempt": attempt}.items() if v is not None}

    def work(api: Api, _: Printer) -> None:
        text = api.raw("GET", f"/runs/{urllib.parse.quote(run_id, safe='')}/output",
                       params=params, headers={"Accept": "text/plain"})
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    _with_api(ctx, work)


@runs.command("list")
def runs_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="e.g. failed")] = None,
    job: Annotated[str | None, typer.Option("--job", help="one job's runs")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 instant")] = None,
    limit: Annotated[int, typer.Option(help="runs")] = 50,
) -> None:
    """Runs across this tenant's jobs, newest first."""
    params = {k: v for k, v in {"status": status, "job_id": job, "since": since,
                                "limit": limit}.items() if v is not None}
    _with_api(ctx, lambda api, p: p.rows(api.call("GET", "/runs", params=params)["items"],
                                         RUN_COLUMNS, "runs"))


# -- alerts -----------------------------------------------------------------------------------

@alerts.command("list")
def alerts_list(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="ISO 8601 instant")] = None,
    kind: Annotated[str | None, typer.Option(help="failure, late, recovered or dlq")] = None,
    limit: Annotated[int, typer.Option(help="alerts per page")] = 50,
    all_pages: Annotated[bool, typer.Option("--all", help="follow every page")] = False,
) -> None:
    """This tenant's alerts, newest first (GET /alerts)."""
    params: dict[str, Any] = {k: v for k, v in {"since": since, "kind": kind,
                                                "limit": limit}.items() if v is not None}

    _with_api(ctx, lambda api, printer: list_pages(api, printer, "/alerts", params, all_pages,
                                                   ALERT_COLUMNS))


# -- the local stack --------------------------------------------------------------------------

def _stack(*args: str) -> None:
    if not STACK.is_file():
        Console(stderr=True).print(f"no local stack here ({STACK} is missing)")
        raise typer.Exit(USAGE)
    code = subprocess.run([str(STACK), *args], check=False).returncode
    if code:
        raise typer.Exit(code if code < 128 else FAILED)


@stack.command("up")
def stack_up() -> None:
    """Start everything that is not running (make up)."""
    _stack("up")


@stack.command("down")
def stack_down() -> None:
    """Stop everything the stack started (make down)."""
    _stack("down")


@stack.command("status")
def stack_status() -> None:
    """What runs; exit 0 when everything `up` starts is running."""
    _stack("status")


@stack.command("logs", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def stack_logs(ctx: typer.Context) -> None:
    """Follow the logs, readable (the options of `duetime logs --help`)."""
    raise typer.Exit(log_view.main(list(ctx.args)))
