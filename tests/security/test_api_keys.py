"""Hole 7 (API keys): keys were stored in plaintext, printed by `make up`, and the published
development keys were accepted anywhere. Now the keys file holds hashes, keys are created and
revoked with `python -m duetime keys` while the gateway runs, and the services refuse to start
with a published development key or secret unless DUETIME_ENV=dev."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from duetime.api_keys import hash_key
from duetime.development_secrets import PUBLISHED_GATEWAY_SECRETS, PUBLISHED_ID_SECRETS
from tests.support.problems import problem
from tests.support.stack import ROOT
from tests.support.waiting import eventually

COMPOSE_KEYS = ROOT / "deploy" / "compose" / "api_keys.conf"
PID_FILE = ROOT / ".stack" / "nginx" / "nginx.pid"
OWN_SECRET = "a-deployment-secret-of-its-own-0123456789"


def _keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duetime", "keys", "--keys-file", env["DUETIME_API_KEYS_FILE"],
         "--pid-file", str(PID_FILE), *args],
        capture_output=True, text=True, timeout=30, check=False, cwd=ROOT)


def test_the_keys_file_holds_hashes_never_keys(env: dict[str, str]) -> None:
    path = Path(env["DUETIME_API_KEYS_FILE"])
    text = path.read_text()
    for key in (env["DUETIME_API_KEY"], env["DUETIME_API_KEY_B"]):
        assert key not in text
        assert f'"{hash_key(key)}"' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def _status(env: dict[str, str], key: str) -> int:
    async with httpx.AsyncClient(base_url=env["DUETIME_URL"], timeout=10) as client:
        return (await client.get("/jobs", headers={"Authorization": f"Bearer {key}"})).status_code


@pytest.mark.skipif(os.environ.get("DUETIME_TEST_ENGINE") == "containers",
                    reason="edits the local stack's keys file and signals its nginx")
async def test_a_created_key_works_after_reload_and_a_revoked_one_is_401(
    env: dict[str, str],
) -> None:
    tenant = f"keys-{uuid.uuid4().hex[:8]}"
    created = _keys(env, "create", "--tenant", tenant)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert "gateway reloaded" in created.stderr
    assert key not in Path(env["DUETIME_API_KEYS_FILE"]).read_text()

    async def works() -> bool:
        return await _status(env, key) == 200

    await eventually(works, timeout=10)
    listed = _keys(env, "list")
    assert tenant in listed.stdout and key not in listed.stdout + listed.stderr
    key_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if tenant in line)

    revoked = _keys(env, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr

    async def refused() -> bool:
        return await _status(env, key) == 401

    await eventually(refused, timeout=10)
    async with httpx.AsyncClient(base_url=env["DUETIME_URL"], timeout=10) as client:
        problem(await client.get("/jobs", headers={"X-API-Key": key}), 401)
    assert tenant not in _keys(env, "list").stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _service_env(env: dict[str, str], port: int, **settings: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DUETIME_")}
    return {**clean, "DUETIME_POSTGRES_DSN": env["DUETIME_POSTGRES_DSN"],
            "DUETIME_HTTP_PORT": str(port), "DUETIME_LOG_FORMAT": "json",
            "DUETIME_ID_SECRET": OWN_SECRET, "DUETIME_GATEWAY_SECRET": OWN_SECRET, **settings}


PUBLISHED = {
    "gateway secret": {"DUETIME_GATEWAY_SECRET": min(PUBLISHED_GATEWAY_SECRETS)},
    "id secret": {"DUETIME_ID_SECRET": min(PUBLISHED_ID_SECRETS)},
    "compose keys": {"DUETIME_API_KEYS_FILE": str(COMPOSE_KEYS)},
}


@pytest.mark.parametrize("what", sorted(PUBLISHED))
async def test_a_service_refuses_to_start_with_a_published_development_secret(
    what: str, env: dict[str, str],
) -> None:
    settings = PUBLISHED[what]
    port = _free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "duetime", "run", "search_service"], capture_output=True, text=True,
        timeout=60, check=False, cwd=ROOT,
        env=_service_env(env, port, DUETIME_ENV="production", **settings))
    assert refused.returncode == 1
    assert "refusing to start with published development secrets" in refused.stderr
    # The control: in a development environment the same settings start and serve.
    await _starts(_service_env(env, port, DUETIME_ENV="dev", **settings), port)


def test_a_service_refuses_to_start_without_a_gateway_secret(env: dict[str, str]) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "duetime", "run", "search_service"], capture_output=True, text=True,
        timeout=60, check=False, cwd=ROOT,
        env=_service_env(env, _free_port(), DUETIME_ENV="dev", DUETIME_GATEWAY_SECRET=""))
    assert refused.returncode == 1
    assert "DUETIME_GATEWAY_SECRET must be set" in refused.stderr


async def _starts(service_env: dict[str, str], port: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "duetime", "run", "search_service"],
                            env=service_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        async def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the service exited with {proc.returncode}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    resp = await client.get(f"http://127.0.0.1:{port}/readyz")
            except httpx.HTTPError:
                return False
            return resp.status_code == 200

        await eventually(ready, timeout=30, interval=0.2)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 20)
