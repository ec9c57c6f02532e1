"""The API as the command line sees it: where it is, which key, and what an answer means.

Exit codes say what went wrong, so scripts can branch on them (docs/cli.md).
"""

from __future__ import annotations

import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

OK, FAILED, USAGE, NOT_FOUND, REJECTED, UNAVAILABLE, RUN_FAILED = 0, 1, 2, 3, 4, 5, 6
PROFILES = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "duetime" / "profiles.toml"
LOCAL_ENV = Path(".stack/env")


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _local_env() -> dict[str, str]:
    """The local stack's env file, when the command runs in the project (make up writes it)."""
    if not LOCAL_ENV.is_file():
        return {}
    found = {}
    for line in LOCAL_ENV.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("DUETIME_URL", "DUETIME_API_KEY"):
            found[key] = value.strip()
    return found


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str


def resolve(url: str | None, api_key: str | None, profile: str | None,
            profiles: Path = PROFILES) -> Target:
    """Flags, then the environment, then the profile (default: `default`), then .stack/env."""
    chosen: dict[str, Any] = {}
    if profiles.is_file():
        table = tomllib.loads(profiles.read_text())
        name = profile or os.environ.get("DUETIME_PROFILE") or "default"
        if profile is not None and name not in table:
            raise CliError(f"no profile {name!r} in {profiles}", USAGE)
        chosen = table.get(name, {})
    elif profile is not None:
        raise CliError(f"no profiles file {profiles}", USAGE)
    local = _local_env()
    final_url = url or os.environ.get("DUETIME_URL") or chosen.get("url") or local.get("DUETIME_URL")
    key = api_key or os.environ.get("DUETIME_API_KEY") or chosen.get("api_key") \
        or local.get("DUETIME_API_KEY")
    if not final_url:
        raise CliError("no API URL: pass --url, set DUETIME_URL, or add a profile", USAGE)
    if not key:
        raise CliError("no API key: pass --api-key, set DUETIME_API_KEY, or add a profile", USAGE)
    if not str(final_url).startswith(("http://", "https://")):
        raise CliError(f"the API URL must be http:// or https://, not {final_url!r}", USAGE)
    return Target(str(final_url).rstrip("/"), str(key))


def _explain(status: int, raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"HTTP {status}: {raw[:300].decode(errors='replace')}"
    if isinstance(body, dict) and "title" in body:
        parts = [f"{status} {body['title']}: {body.get('detail', '')}"]
        parts += [f"  {e.get('field')}: {e.get('message')}" for e in body.get("errors") or []
                  if isinstance(e, dict)]
        return "\n".join(parts)
    return f"HTTP {status}: {str(body)[:300]}"


def _failure(status: int, raw: bytes) -> CliError:
    if status == 404:
        return CliError(_explain(status, raw), NOT_FOUND)
    if status >= 500 or status == 429:
        return CliError(_explain(status, raw), UNAVAILABLE)
    return CliError(_explain(status, raw), REJECTED)


class Api:
    """A blocking client: one request at a time is all a command line needs, and the standard
    library's is enough for that (the runtime carries no test-only HTTP client, ADR 0021)."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.base, self.timeout = target.url, timeout
        self.headers = {"Authorization": f"Bearer {target.api_key}", "User-Agent": "duetime-cli",
                        "Accept": "application/json"}

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             json: Any = None, headers: dict[str, str] | None = None) -> Any:
        body = None if json is None else orjson.dumps(json)
        raw = self.raw(method, path, params=params, body=body, headers={
            **(headers or {}), **({"Content-Type": "application/json"} if body is not None else {})})
        return orjson.loads(raw) if raw else None

    def call_raw_json(self, method: str, path: str, body: bytes, content_type: str, *,
                      params: dict[str, Any] | None = None) -> Any:
        """A body sent as it is (a jobs file: the server parses it), a JSON answer."""
        answer = self.raw(method, path, params=params, body=body,
                          headers={"Content-Type": content_type})
        return orjson.loads(answer) if answer else None

    def raw(self, method: str, path: str, *, params: dict[str, Any] | None = None,
            body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        """The answer's bytes as sent (a command's output is text, not JSON)."""
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        # The scheme is http(s): resolve() refuses any other URL.
        request = urllib.request.Request(url, data=body, method=method,  # noqa: S310
                                         headers={**self.headers, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                answer: bytes = resp.read()
                return answer
        except urllib.error.HTTPError as exc:
            with exc:  # its body is the problem document
                problem = exc.read()
            raise _failure(exc.code, problem) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(f"cannot reach {self.base}: {exc}", UNAVAILABLE) from exc

    def close(self) -> None:
        return None
