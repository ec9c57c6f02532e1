"""The command line's pure parts: specs from flags, patches, where the API is, exit codes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from duetime.console.client import (
    NOT_FOUND,
    REJECTED,
    UNAVAILABLE,
    USAGE,
    Api,
    CliError,
    Target,
    resolve,
)
from duetime.console.specs import labels_from, load_document, patch_from, schedule_from_flags


def test_exactly_one_schedule_flag() -> None:
    assert schedule_from_flags(None, None, 60, None, "UTC", False) == \
        {"type": "interval", "every_seconds": 60}
    assert schedule_from_flags(None, None, None, "30 2 * * *", "Europe/Berlin", False) == \
        {"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin"}
    assert schedule_from_flags(None, None, None, None, "UTC", True) == {"type": "now"}
    with pytest.raises(CliError) as exc:
        schedule_from_flags(None, None, None, None, "UTC", False)
    assert exc.value.code == USAGE
    with pytest.raises(CliError, match="--at, --in"):
        schedule_from_flags("2030-01-01T00:00:00Z", 5.0, None, None, "UTC", False)


def test_set_builds_a_merge_patch_with_json_values() -> None:
    assert patch_from(["name=nightly", "target.timeout_seconds=10", "target.headers.X-A=null",
                       "labels={\"team\": \"a\"}"]) == {
        "name": "nightly", "target": {"timeout_seconds": 10, "headers": {"X-A": None}},
        "labels": {"team": "a"}}
    for bad in (["novalue"], ["=x"], ["a..b=1"], ["a=1", "a.b=2"]):
        with pytest.raises(CliError):
            patch_from(bad)


def test_labels_and_documents(tmp_path: Path) -> None:
    assert labels_from(["team=a", "tier=1=2"]) == {"team": "a", "tier": "1=2"}
    with pytest.raises(CliError):
        labels_from(["team"])
    (tmp_path / "job.yaml").write_text("name: n\nschedule: {type: now}\n")
    assert load_document(str(tmp_path / "job.yaml")) == {"name": "n", "schedule": {"type": "now"}}
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    with pytest.raises(CliError):
        load_document(str(tmp_path / "bad.yaml"))
    with pytest.raises(CliError):
        load_document(str(tmp_path / "missing.json"))


def test_flags_beat_environment_beat_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .stack/env here
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[default]\nurl = "http://p"\napi_key = "pk"\n'
                        '[prod]\nurl = "http://prod"\napi_key = "prodk"\n')
    monkeypatch.delenv("DUETIME_URL", raising=False)
    monkeypatch.delenv("DUETIME_API_KEY", raising=False)
    monkeypatch.delenv("DUETIME_PROFILE", raising=False)
    assert resolve(None, None, None, profiles) == Target("http://p", "pk")
    assert resolve(None, None, "prod", profiles) == Target("http://prod", "prodk")
    monkeypatch.setenv("DUETIME_URL", "http://env/")
    assert resolve(None, None, "prod", profiles) == Target("http://env", "prodk")
    assert resolve("http://flag", "fk", "prod", profiles) == Target("http://flag", "fk")
    with pytest.raises(CliError) as exc:
        resolve(None, None, "staging", profiles)
    assert exc.value.code == USAGE
    monkeypatch.delenv("DUETIME_URL")
    with pytest.raises(CliError) as exc:
        resolve(None, None, None, tmp_path / "none.toml")
    assert exc.value.code == USAGE


class _Answer(BaseHTTPRequestHandler):
    """Answers every request with the status in its path: /404 -> 404 problem+json."""

    def do_GET(self) -> None:
        status = int(self.path.strip("/").split("?")[0])
        body = orjson.dumps({"type": "about:blank", "title": "T", "status": status,
                             "detail": "d", "errors": [{"field": "schedule.at",
                                                        "message": "in the past"}]})
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("status", "code"), [(404, NOT_FOUND), (422, REJECTED), (409, REJECTED),
                                              (401, REJECTED), (429, UNAVAILABLE),
                                              (503, UNAVAILABLE)])
def test_answers_map_to_exit_codes(server: str, status: int, code: int) -> None:
    with pytest.raises(CliError) as exc:
        Api(Target(server, "k")).call("GET", f"/{status}")
    assert exc.value.code == code
    assert "schedule.at: in the past" in str(exc.value)


def test_unreachable_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(CliError) as exc:
        Api(Target(f"http://127.0.0.1:{port}", "k"), timeout=5).call("GET", "/jobs")
    assert exc.value.code == UNAVAILABLE


def test_only_http_urls(tmp_path: Path) -> None:
    with pytest.raises(CliError) as exc:
        resolve("file:///etc/passwd", "k", None, tmp_path / "none.toml")
    assert exc.value.code == USAGE
