"""The egress policy (executor.egress): which addresses a webhook may reach, and the allowlist."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from executor.egress import (
    LOOKUPS_PER_TENANT,
    RESOLVER_THREADS,
    RESOLVING_FOR,
    EgressBlocked,
    EgressPolicy,
    GuardedResolver,
    address_problem,
    blocked_reason,
    parse_entry,
    socket_factory,
)

STACK = EgressPolicy.parse("127.0.0.1/32:18900-18999,127.0.0.1/32:28000-28999")


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("100.64.0.1", "CGNAT"), ("100.127.255.254", "CGNAT"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("fd00::1", "unique local"),
    ("fc00::1", "unique local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("192.0.2.1", "documentation"), ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"), ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    # IPv6 forms that reach or translate to a blocked IPv4 address
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::10.0.0.1", "private"), ("64:ff9b:1::7f00:1", "loopback"),
    ("2002:7f00:1::", "loopback"), ("2002:a9fe:a9fe::1", "link-local"),
    ("::127.0.0.1", "loopback"), ("::10.0.0.1", "private"),
])
def test_non_global_addresses_are_blocked_and_say_why(address: str, why: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and why in problem
    assert STACK.problem(address, 443) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_global_unicast_is_allowed(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None
    assert EgressPolicy().problem(address, 443) is None


def test_the_allowlist_admits_its_networks_on_its_ports_only() -> None:
    assert STACK.problem("127.0.0.1", 18900) is None
    assert STACK.problem("127.0.0.1", 18999) is None
    assert STACK.problem("127.0.0.1", 28500) is None
    assert STACK.problem("::ffff:127.0.0.1", 18950) is None  # the same destination
    for port in (18899, 19000, 27999, 29000, 18080, 18102, 19092, 15432, 16379):
        assert STACK.problem("127.0.0.1", port) == "loopback address", port
    assert STACK.problem("127.0.0.2", 18950) == "loopback address"
    assert STACK.problem("::1", 18950) == "loopback address"


@pytest.mark.parametrize(("text", "network", "low", "high"), [
    ("10.0.0.0/8", "10.0.0.0/8", 1, 65535),
    ("10.1.2.3", "10.1.2.3/32", 1, 65535),
    (" 127.0.0.1/32:18900-18999 ", "127.0.0.1/32", 18900, 18999),
    ("192.168.0.0/16:443", "192.168.0.0/16", 443, 443),
    ("fd00::/8", "fd00::/8", 1, 65535),
    ("[fd00::]/8:443", "fd00::/8", 443, 443),
    ("[::1]:8000-8010", "::1/128", 8000, 8010),
])
def test_allowlist_entries_parse(text: str, network: str, low: int, high: int) -> None:
    entry = parse_entry(text)
    assert (str(entry.network), entry.low, entry.high) == (network, low, high)


@pytest.mark.parametrize("text", ["nonsense", "10.0.0.0/33", "10.0.0.0/8:0", "10.0.0.0/8:9-1",
                                  "10.0.0.0/8:70000", "10.0.0.0/8:a-b", "[fd00::/8:443"])
def test_bad_allowlist_entries_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="egress allowlist entry"):
        EgressPolicy.parse(f"8.8.8.8/32,{text}")


def test_an_empty_allowlist_admits_nothing_extra() -> None:
    assert EgressPolicy.parse(" , ").allowed == ()


@pytest.mark.parametrize(("url", "why"), [
    ("http://2130706433:18950/", "numeric host not in dotted-quad form"),
    ("http://0177.0.0.1:18950/", "numeric host not in dotted-quad form"),
    ("http://127.1:18950/", "numeric host not in dotted-quad form"),
    ("http://0x7f000001:18950/", None),  # not digits and dots: the resolver judges it
    ("http://2130706433:80/", "loopback address"),
    ("http://017700000001/", "loopback address"),
    ("http://134744072/", "numeric host not in dotted-quad form"),  # 8.8.8.8, but ambiguous
    ("http://127.0.0.1:18950/", None),  # canonical: judged at connect time
    ("http://example.com/", None),
])
def test_legacy_numeric_hosts_are_judged_as_the_address_they_denote(url: str,
                                                                    why: str | None) -> None:
    if why is None:
        STACK.check_url(url)
        return
    with pytest.raises(EgressBlocked) as caught:
        STACK.check_url(url)
    assert caught.value.reason == why
    assert str(caught.value) == f"blocked by egress policy: {why}"


class _Answers(AbstractResolver):
    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": h, "port": port, "family": family, "proto": 0,
                 "flags": 0} for h in self.hosts]

    async def close(self) -> None:
        return None


async def test_the_resolver_keeps_only_allowed_addresses() -> None:
    # A rebinding name answering a public and a private address: only the public one is used.
    resolver = GuardedResolver(EgressPolicy(), _Answers("10.0.0.7", "8.8.8.8", "::1"))
    assert [r["host"] for r in await resolver.resolve("rebind.example", 443)] == ["8.8.8.8"]


async def test_the_resolver_refuses_a_name_with_only_blocked_addresses() -> None:
    resolver = GuardedResolver(STACK, _Answers("127.0.0.1", "169.254.169.254"))
    with pytest.raises(EgressBlocked, match="blocked by egress policy: loopback address"):
        await resolver.resolve("localhost", 18102)
    assert [r["host"] for r in await resolver.resolve("localhost", 18950)] == ["127.0.0.1"]


def test_the_socket_factory_refuses_the_address_it_is_asked_to_connect_to() -> None:
    make = socket_factory(STACK)
    for addr_info in [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 18102)),
                      (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 18950, 0, 0)),
                      (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%lo", 80, 0, 1))]:
        with pytest.raises(EgressBlocked):
            make(addr_info)
    with make((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 18950))) as sock:
        assert sock.family == socket.AF_INET


def test_a_refusal_is_found_however_aiohttp_wrapped_it() -> None:
    blocked = EgressBlocked("loopback address")
    try:
        try:
            raise blocked
        except OSError as exc:
            raise ConnectionError("Cannot connect to host") from exc
    except ConnectionError as wrapped:
        outer: Any = wrapped
    assert blocked_reason(outer) == "loopback address"
    assert blocked_reason(ConnectionRefusedError()) is None


class _SlowDns(AbstractResolver):
    """A DNS server that answers when told to: each lookup waits for its name's event."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.answer: dict[str, asyncio.Event] = {}

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        await self.answer.setdefault(host, asyncio.Event()).wait()
        return [{"hostname": host, "host": "8.8.8.8", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


async def _resolve_as(resolver: GuardedResolver, tenant: str, host: str) -> list[ResolveResult]:
    RESOLVING_FOR.set(tenant)  # as fire_http does, in the call's own task
    return await resolver.resolve(host, 443)


async def test_one_tenant_cannot_hold_every_lookup_a_slow_dns_server_keeps() -> None:
    dns = _SlowDns()
    resolver = GuardedResolver(EgressPolicy(), dns, per_tenant=2)
    # Tenant A fires at five fresh names its own slow DNS server sits on.
    flood = [asyncio.create_task(_resolve_as(resolver, "a", f"x{i}.evil.example"))
             for i in range(5)]
    await asyncio.sleep(0.01)
    assert len(dns.asked) == 2 and resolver.lookups_in_flight("a") == 2
    # Tenant B's lookup goes out at once and is answered.
    other = asyncio.create_task(_resolve_as(resolver, "b", "api.example"))
    await asyncio.sleep(0.01)
    assert dns.asked[-1] == "api.example"
    dns.answer.setdefault("api.example", asyncio.Event()).set()
    assert (await other)[0]["host"] == "8.8.8.8"
    # A's calls time out: their lookups still hold A's slots (the OS thread is still busy).
    for task in flood:
        task.cancel()
    await asyncio.gather(*flood, return_exceptions=True)
    assert resolver.lookups_in_flight("a") == 2
    assert len(dns.asked) == 3  # none of A's waiting lookups went out meanwhile
    # The server answers: the slots are free, and nothing of A is remembered.
    for name in dns.asked[:2]:
        dns.answer[name].set()
    await asyncio.sleep(0.01)
    assert resolver.lookups_in_flight("a") == 0
    assert resolver._slots == {} and not resolver._users


async def test_a_tenants_lookup_waits_for_a_free_slot_then_resolves() -> None:
    dns = _SlowDns()
    resolver = GuardedResolver(EgressPolicy(), dns, per_tenant=1)
    first = asyncio.create_task(_resolve_as(resolver, "a", "one.example"))
    second = asyncio.create_task(_resolve_as(resolver, "a", "two.example"))
    await asyncio.sleep(0.01)
    assert dns.asked == ["one.example"]
    dns.answer.setdefault("one.example", asyncio.Event()).set()
    await first
    await asyncio.sleep(0.01)
    assert dns.asked == ["one.example", "two.example"]
    dns.answer["two.example"].set()
    assert (await second)[0]["hostname"] == "two.example"


def test_the_executor_sizes_its_resolver_threads_before_its_loop_starts() -> None:
    import executor.service  # noqa: F401  (sets it at import, before any loop runs)

    assert int(os.environ["UV_THREADPOOL_SIZE"]) >= RESOLVER_THREADS > 3 * LOOKUPS_PER_TENANT
