"""A tenant added on a running stack (`make key TENANT=…`, as the README says) does not keep the
writer from starting again: its ingress topic is created when the writer starts, and the new
tenant's jobs are stored and fired. (Before, the writer's subscription to a topic that did not
exist never got ready, and `stack.sh restart writer` stopped it.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from duetime import kafka
from schemas.topics import ingress_topic
from tests.support.jobs import create, http_job
from tests.support.kafka import admin_settings
from tests.support.sink import Sink
from tests.support.stack import ROOT, stack

pytestmark = pytest.mark.skipif(
    os.environ.get("DUETIME_TEST_ENGINE") == "containers",
    reason="the compose stack's tenants are fixed at start")


def keys(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "duetime", "keys", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


async def test_a_tenant_added_on_a_running_stack_survives_a_writer_restart(
    env: dict[str, str], sink: Sink, path: str,
) -> None:
    tenant = f"new{uuid.uuid4().hex[:8]}"
    # The README's `KEY=$(make -s key …); curl …`, back to back as a shell runs them: the key
    # works at once (`keys create` returns once the gateway's reloaded workers run).
    script = ('KEY=$("$0" -m duetime keys create --tenant "$1" 2>/dev/null); echo "$KEY"; '
              'curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer $KEY" '
              '"$2/jobs?limit=1"')
    done = subprocess.run(["sh", "-c", script, sys.executable, tenant, env["DUETIME_URL"]],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    key, first = done.stdout.split()
    key_id = next(line.split()[0] for line in keys("list").splitlines() if tenant in line)
    try:
        assert first == "200", "a key fresh from `keys create` was refused"
        await asyncio.to_thread(stack, "restart", "writer")  # raises unless it got ready
        async with kafka.admin(admin_settings(env)) as client:
            assert ingress_topic(tenant) in await client.list_topics()
        async with httpx.AsyncClient(base_url=env["DUETIME_URL"], timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}) as api:
            await create(api, http_job(sink.url(path), {"type": "delay", "seconds": 1}))
        assert len(await sink.wait_for(path, 1, timeout=30)) == 1
    finally:
        keys("revoke", key_id)
