"""`duetime apply`, `runs get` and `runs output` in process (typer's runner) against a stand-in
server that records what the CLI sent: the file goes as it is, with its media type; the
answer becomes a table, JSON, or the raw output. The real server: tests/e2e/test_apply.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from typer.testing import CliRunner

from duetime.console.app import app
from duetime.console.client import REJECTED, USAGE
from duetime.console.specs import jobs_file

ANSWER = {"dry_run": False, "created": 1, "updated": 1, "unchanged": 0, "items": [
    {"index": 0, "name": "build", "job_id": "a" * 32, "result": "created", "changes": []},
    {"index": 1, "name": "test", "job_id": "b" * 32, "result": "updated",
     "changes": [{"path": "priority", "from": 5, "to": 9}]}]}
RUN = {"run_id": "r-1", "job_id": "a" * 32, "status": "failed", "exit_code": 1,
       "steps": [{"name": "build", "status": "succeeded", "exit_code": 0, "duration_ms": 10},
                 {"name": "test", "status": "failed", "exit_code": 1, "duration_ms": 20}]}


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append({"path": self.path, "type": self.headers["Content-Type"], "body": body})
        if b"invalid" in body:
            self._answer(422, orjson.dumps({"title": "Invalid request", "status": 422, "errors": [
                {"field": "jobs[0].schedule", "message": "bad"}]}), "application/problem+json")
        else:
            self._answer(202, orjson.dumps(ANSWER), "application/json")

    def do_GET(self) -> None:
        self.seen.append({"path": self.path})
        if self.path.startswith("/runs/r-1/output"):
            self._answer(200, b"step output \xe2\x9c\x93\n", "text/plain; charset=utf-8")
        else:
            self._answer(200, orjson.dumps(RUN), "application/json")

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run(server: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["--url", server, "--api-key", "k", *args])
    assert result.exit_code == code, result.output
    return result.output


def test_apply_sends_the_file_as_it_is_and_shows_each_job(server: str, tmp_path: Path) -> None:
    text = b"jobs:\n  - name: build  # a comment the server sees too\n    schedule: '* * * * *'\n"
    (tmp_path / "jobs.yaml").write_bytes(text)
    out = run(server, "apply", "-f", str(tmp_path / "jobs.yaml"), "--dry-run")
    sent = _Recorder.seen[-1]
    assert sent == {"path": "/jobs:apply?dry_run=true", "type": "application/yaml", "body": text}
    assert "1 created, 1 updated, 0 unchanged" in out
    assert "priority: 5 → 9" in out and "a" * 32 in out
    as_json = orjson.loads(run(server, "apply", "-f", str(tmp_path / "jobs.yaml"), "-o", "json"))
    assert as_json == ANSWER
    assert _Recorder.seen[-1]["path"] == "/jobs:apply"


def test_apply_errors(server: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('[{"name": "invalid"}]')
    out = run(server, "apply", "-f", str(tmp_path / "bad.json"), code=REJECTED)
    assert "jobs[0].schedule: bad" in out
    assert _Recorder.seen[-1]["type"] == "application/json"
    run(server, "apply", "-f", str(tmp_path / "none.yaml"), code=USAGE)
    run(server, "apply", "-f", str(tmp_path / "bad.json"), "-o", "csv", code=USAGE)


def test_runs_get_and_output(server: str) -> None:
    out = run(server, "runs", "get", "r-1")
    assert "failed" in out and "duration_ms" in out  # the run, then its steps' table
    assert orjson.loads(run(server, "runs", "get", "r-1", "-o", "json")) == RUN
    assert run(server, "runs", "output", "r-1", "--step", "test") == "step output ✓\n"
    assert _Recorder.seen[-1]["path"] == "/runs/r-1/output?step=test"


def test_jobs_files_are_counted_without_expanding_them(tmp_path: Path) -> None:
    cases = {"list.json": (b'[{"name": "a"}, {"name": "b"}]', "application/json", 2),
             "wrapped.yaml": (b"jobs:\n  - name: a\n", "application/yaml", 1),
             "bomb.yaml": (b'a: &a ["x","x"]\nb: &b [*a,*a]\njobs: *b\n', "application/yaml", None),
             "broken.yaml": (b"jobs: [", "application/yaml", None)}
    for name, (raw, kind, count) in cases.items():
        (tmp_path / name).write_bytes(raw)
        assert jobs_file(str(tmp_path / name)) == (raw, kind, count), name
