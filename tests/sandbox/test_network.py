"""`network: true` (ADR 0038): real sandboxes, real processes, a real proxy and real sinks.

The sandbox keeps its own network namespace; the only way out is the run's egress proxy, which
judges every destination by the webhooks' policy. The stack's allowlist admits the test sinks'
loopback ports (18900-18999) and nothing else of loopback — so the stack's own Redis and
Postgres are refused like the metadata address or a private network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from executor.command.sandbox import PROXY_PORT, Outcome, Sandbox
from executor.command.spec import CommandSpec
from tests.sandbox.conftest import Collected, sandbox_processes
from tests.support.sink import Sink

# The sinks live on the HOST's loopback, which inside the sandbox is only reachable through the
# proxy: the run's default NO_PROXY (its own localhost) is turned off for them.
THROUGH_PROXY = {"NO_PROXY": "", "no_proxy": ""}
# Loopback ports the allowlist does not admit (just below the sinks'), as in test_ssrf.py.
OUTSIDE_PORTS = range(18800, 18900)

FETCH = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
except Exception as exc:
    print("refused:", exc)
    sys.exit(3)
"""
TUNNEL = f"""
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", {PROXY_PORT}, timeout=10)
conn.set_tunnel(sys.argv[1], int(sys.argv[2]))
try:
    conn.request("GET", "/tunnelled")
    print(conn.getresponse().read().decode())
except OSError as exc:
    print("refused:", exc)
    sys.exit(3)
"""
RAW = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    print("connected")
except OSError as exc:
    print("no route:", exc.strerror)
"""


async def run(sandbox: Sandbox, script: str, *args: str, network: bool = True,
              env: dict[str, str] | None = None) -> tuple[Outcome, str]:
    out = Collected()
    spec = CommandSpec(("python3", "-c", script, *args), network=network,
                       env=THROUGH_PROXY if env is None else env, timeout_seconds=30)
    outcome = await sandbox.run(spec, out)
    assert sandbox_processes() == []  # the relay died with the run
    return outcome, out.text


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    sink = await Sink(answer_for=lambda hit: f"answer to {hit.method} {hit.path}").start()
    yield sink
    await sink.stop()


@pytest.fixture
async def outside() -> AsyncIterator[Sink]:
    """A listener where commands may not go: it must never be reached."""
    sink = await Sink(ports=OUTSIDE_PORTS).start()
    yield sink
    await sink.stop()


async def test_a_command_reaches_an_allowed_sink_through_the_proxy_env(
    sandbox: Sandbox, sink: Sink,
) -> None:
    outcome, text = await run(sandbox, FETCH, sink.url("/plain"))
    assert (outcome.status, outcome.egress_refused) == ("succeeded", ()), text
    assert text == "answer to GET /plain\n"
    hit = sink.hits_for("/plain")[0]
    # Forwarded as the destination expects it: no proxy headers, one request per connection.
    assert not any(name.lower().startswith("proxy-") for name in hit.headers)


async def test_connect_tunnels_reach_an_allowed_sink(sandbox: Sandbox, sink: Sink) -> None:
    outcome, text = await run(sandbox, TUNNEL, "127.0.0.1", str(sink.port))
    assert outcome.status == "succeeded", text
    assert text == "answer to GET /tunnelled\n"


def _stack_port(url: str) -> str:
    return str(urlsplit(url).port)


@pytest.mark.parametrize(("where", "why"), [
    ("redis", "loopback address"),
    ("postgres", "loopback address"),
    ("169.254.169.254:80", "link-local address"),
    ("10.1.2.3:443", "private address"),
    ("[::ffff:127.0.0.1]:6379", "loopback address"),
    ("100.64.0.1:80", "shared address space (CGNAT)"),
    ("localhost:6379", "loopback address"),  # a name: resolved and judged by the proxy
    ("2130706433:80", "loopback address"),   # 127.0.0.1 in another spelling
])
@pytest.mark.parametrize("script", [FETCH, TUNNEL], ids=["http", "connect"])
async def test_blocked_destinations_get_the_egress_reason(
    sandbox: Sandbox, env: dict[str, str], where: str, why: str, script: str,
) -> None:
    if where == "redis":
        host, port = "127.0.0.1", _stack_port(env["DUETIME_REDIS_URL"])
    elif where == "postgres":
        host, port = "127.0.0.1", _stack_port(env["DUETIME_POSTGRES_DSN"])
    else:
        host, _, port = where.rpartition(":")
    args = (f"http://{host}:{port}/x",) if script is FETCH else (host.strip("[]"), port)
    outcome, text = await run(sandbox, script, *args)
    assert f"blocked by egress policy: {why}" in text, text
    assert outcome.status == "failed" and outcome.exit_code == 3
    assert outcome.egress_refused == (why,)


async def test_a_loopback_port_outside_the_allowlist_is_never_reached(
    sandbox: Sandbox, outside: Sink,
) -> None:
    _, text = await run(sandbox, FETCH, outside.url("/secret"))
    assert "blocked by egress policy: loopback address" in text, text
    assert outside.hits == []


async def test_a_raw_connect_that_ignores_the_proxy_has_no_route(
    sandbox: Sandbox, sink: Sink,
) -> None:
    # The sink's port is allowed, and listening on the host: a socket of the sandbox's own
    # loopback finds nothing there, and any other address has no route at all.
    _, local = await run(sandbox, RAW, "127.0.0.1", str(sink.port))
    _, world = await run(sandbox, RAW, "1.1.1.1", "80")
    assert local == "no route: Connection refused\n"
    assert world == "no route: Network is unreachable\n"
    assert sink.hits == []


@pytest.mark.parametrize("request_head", [
    "GARBAGE\r\n\r\n",
    "GET https://1.1.1.1/ HTTP/1.1\r\n\r\n",     # https must go through CONNECT
    "CONNECT 1.1.1.1 HTTP/1.1\r\n\r\n",          # no port
    "CONNECT 1.1.1.1:99999 HTTP/1.1\r\n\r\n",
    "GET http://1.1.1.1/ HTTP/1.1\r\nbad header\r\n\r\n",
    "GET /relative HTTP/1.1\r\n\r\n",
    "GET http://1.1.1.1/ HTTP/1.1\r\nX: " + "a" * 70_000 + "\r\n\r\n",
])
async def test_hostile_requests_to_the_proxy_get_a_400(sandbox: Sandbox,
                                                        request_head: str) -> None:
    script = f"""
import socket, sys
s = socket.create_connection(("127.0.0.1", {PROXY_PORT}), timeout=10)
s.sendall(sys.argv[1].encode())
print(s.recv(200).split(b"\\r\\n")[0].decode())
"""
    _, text = await run(sandbox, script, request_head)
    assert text == "HTTP/1.1 400 Bad Request\n", text


async def test_without_network_there_is_no_proxy_and_no_route(sandbox: Sandbox, sink: Sink) -> None:
    script = RAW + "import os; print(sorted(k for k in os.environ if 'proxy' in k.lower()))\n"
    _, relay = await run(sandbox, script, "127.0.0.1", str(PROXY_PORT), network=False, env={})
    _, world = await run(sandbox, RAW, "1.1.1.1", "80", network=False, env={})
    assert relay == "no route: Connection refused\n[]\n"
    assert world == "no route: Network is unreachable\n"
