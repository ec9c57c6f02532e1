"""Where a webhook may connect: global unicast addresses, plus what the operator allows.

A job chooses its URL, so without this a tenant could make the executor call the cloud's
metadata service, the stack's own services or anything else on its network, and read the
answer back (issue 7, hole 2). The check is made on the address actually connected to, at
connect time: the resolver drops blocked addresses from every lookup, and the socket factory
refuses a blocked address once more just before `connect()` — the one place every path
(resolved names, IP literals, which aiohttp never hands to the resolver, the DNS cache) goes
through. So a name that resolves differently the second time (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import weakref
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Checked in order; the first match names why an address is blocked. Python's own
# is_private/is_global changed between patch releases (CVE-2024-4032), so the ranges are
# spelled out here and `is_global` is only the last word for what none of them names.
_BLOCKED: list[tuple[str, str]] = [
    ("0.0.0.0/8", "unspecified address"),
    ("::/128", "unspecified address"),
    ("127.0.0.0/8", "loopback address"),
    ("::1/128", "loopback address"),
    ("10.0.0.0/8", "private address"),
    ("172.16.0.0/12", "private address"),
    ("192.168.0.0/16", "private address"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("169.254.0.0/16", "link-local address"),
    ("fe80::/10", "link-local address"),
    ("224.0.0.0/4", "multicast address"),
    ("ff00::/8", "multicast address"),
    ("fc00::/7", "unique local address"),
    ("fec0::/10", "site-local address"),
    ("192.0.0.0/24", "reserved address"),
    ("192.0.2.0/24", "documentation address"),
    ("198.51.100.0/24", "documentation address"),
    ("203.0.113.0/24", "documentation address"),
    ("2001:db8::/32", "documentation address"),
    ("3fff::/20", "documentation address"),
    ("198.18.0.0/15", "benchmarking address"),
    ("2001:2::/48", "benchmarking address"),
    ("192.88.99.0/24", "reserved address"),
    ("240.0.0.0/4", "reserved address"),
    ("100::/64", "discard-only address"),
    ("2001::/32", "Teredo address"),
]
_BLOCKED_NETS = [(ipaddress.ip_network(net), why) for net, why in _BLOCKED]
# IPv6 forms that carry an IPv4 address in their low 32 bits (6to4: bits 16-48): judged by it.
_NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class EgressBlocked(OSError):
    """A connection the egress policy refuses; `reason` is safe to show to the tenant."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"blocked by egress policy: {reason}")
        self.reason = reason


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form reaches or translates to, if it is such a form."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` is not a global unicast address; None when it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = address_problem(inner)
            if why is not None:
                return f"{why} in an IPv6 form"
            if ip in _IPV4_COMPATIBLE:
                return "deprecated IPv4-compatible IPv6 address"
            return None
    for net, why in _BLOCKED_NETS:
        if ip.version == net.version and ip in net:
            return why
    return None if ip.is_global else "address that is not globally routable"


@dataclass(frozen=True)
class Allowed:
    """One allowlist entry: a network and an inclusive port range."""

    network: IPNetwork
    low: int = 1
    high: int = 65535

    def admits(self, ip: IPAddress, port: int) -> bool:
        return ip.version == self.network.version and ip in self.network \
            and self.low <= port <= self.high


def _ports(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    lo, hi = int(low), int(high or low)
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"bad port range {text!r}")
    return lo, hi


def parse_entry(text: str) -> Allowed:
    """`CIDR`, `CIDR:port` or `CIDR:low-high`; an IPv6 network with ports is bracketed:
    `[fd00::]/8:443`."""
    text = text.strip()
    network, ports = text, ""
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        prefix, _, ports = rest.partition(":")
        network = address + prefix
    elif text.count(":") == 1:
        network, _, ports = text.partition(":")
    try:
        net = ipaddress.ip_network(network, strict=False)
        return Allowed(net, *_ports(ports)) if ports else Allowed(net)
    except ValueError as exc:
        raise ValueError(f"egress allowlist entry {text!r}: {exc}") from None


@dataclass(frozen=True)
class EgressPolicy:
    allowed: tuple[Allowed, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EgressPolicy:
        """A comma-separated allowlist, e.g. `127.0.0.1/32:18900-18999,10.1.0.0/16:443`."""
        return cls(tuple(parse_entry(part) for part in text.split(",") if part.strip()))

    def problem(self, host: str, port: int) -> str | None:
        """Why connecting to `host` (an IP address) on `port` is refused; None if it may."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return "not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # the same destination: judged and allowed as the IPv4 address
        if any(entry.admits(ip, port) for entry in self.allowed):
            return None
        return address_problem(ip)

    def check(self, host: str, port: int) -> None:
        why = self.problem(host, port)
        if why is not None:
            raise EgressBlocked(why)

    def check_url(self, url: str) -> None:
        """Refuse, before any connection, a host written as a number in a legacy form.

        aiohttp hands a host made of digits and dots straight to the socket, without the
        resolver, and refuses forms such as `2130706433`, `0177.0.0.1` or `127.1`; the OS would
        read them as 127.0.0.1. They are judged here as that address, and refused as ambiguous
        even when it is global, so the error says "blocked by egress policy" and the call is
        never retried. Other hosts are checked at connect time.
        """
        parsed = URL(url)
        host, port = parsed.raw_host or "", parsed.port or 0
        if ":" in host or not host.replace(".", "").isdigit() or _canonical_ipv4(host):
            return
        try:
            address = socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            raise EgressBlocked("malformed numeric host") from None
        raise EgressBlocked(self.problem(address, port) or "numeric host not in dotted-quad form")


def _canonical_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and str(int(p)) == p and int(p) < 256
                                   for p in parts)


class EgressSettings(BaseSettings):
    """The operator's allowlist, for every service that connects where a tenant chose."""

    model_config = SettingsConfigDict(env_prefix="DUETIME_", extra="ignore")

    # Networks (and ports) a call may reach although they are not global unicast, e.g.
    # `127.0.0.1/32:18900-18999,10.1.0.0/16:443` (docs/security.md).
    egress_allow: str = ""

    @field_validator("egress_allow")
    @classmethod
    def _egress(cls, value: str) -> str:
        EgressPolicy.parse(value)  # a typo stops the service at start, loudly
        return value

    @property
    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.egress_allow)


# The tenant whose call is looking a name up: set by the call (each runs in a task of its own,
# and aiohttp's connector resolves in a task that inherits the caller's context).
RESOLVING_FOR: ContextVar[str] = ContextVar("resolving_for", default="")
# OS lookups one tenant may have in flight. Each holds one of the event loop's resolver
# threads until the OS answers, however long its DNS server takes and even after the call
# timed out: without a cap, a tenant firing at fresh names under a slow DNS server of its own
# would hold them all, and every other tenant's uncached lookups would wait. A quarter of the
# threads: one tenant's fan-out to many fresh names still resolves 4 at a time, as libuv's
# default pool of 4 did for everyone, and it takes four such tenants to fill the pool.
LOOKUPS_PER_TENANT = 4
# The executor's libuv thread pool (UV_THREADPOOL_SIZE, read once, at its first use; set by
# executor.service at import, unless the environment says otherwise).
RESOLVER_THREADS = 16
# How long a name's addresses are used once looked up: by the connector's DNS cache and by the
# resolver's own memo, through which the executor keys a call's connection slot by address
# before the connector looks the name up (ADR 0062). Both hold the same answer for as long.
DNS_CACHE_SECONDS = 300
# Names the memo keeps at most; the oldest answer goes first.
DNS_MEMO_NAMES = 4096


class GuardedResolver(AbstractResolver):
    """Resolves with the OS (getaddrinfo) and keeps only the addresses the policy allows; at
    most LOOKUPS_PER_TENANT lookups in flight per tenant."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None,
                 per_tenant: int = LOOKUPS_PER_TENANT, memo_names: int = DNS_MEMO_NAMES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.inner = inner or ThreadedResolver()
        self.per_tenant = per_tenant
        self.memo_names, self.clock = memo_names, clock
        # (host, port, family) -> (until, allowed addresses): what a lookup found, so the slot's
        # key and the connector's own lookup of the same call cost one lookup, not two.
        self._memo: dict[tuple[str, int, int], tuple[float, list[ResolveResult]]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._users: Counter[str] = Counter()  # lookups holding or awaiting each tenant's slots
        self._in_flight: Counter[str] = Counter()  # lookups the OS is answering, per tenant

    async def _lookup(self, host: str, port: int,
                      family: socket.AddressFamily) -> list[ResolveResult]:
        tenant = RESOLVING_FOR.get()
        self._users[tenant] += 1
        slots = self._slots.setdefault(tenant, asyncio.Semaphore(self.per_tenant))
        try:
            await slots.acquire()
        except BaseException:
            self._leave(tenant)
            raise
        lookup = asyncio.ensure_future(self.inner.resolve(host, port, family))
        self._in_flight[tenant] += 1

        def done(finished: asyncio.Future[list[ResolveResult]]) -> None:
            if not finished.cancelled():
                finished.exception()  # retrieved: a caller that gave up never will
            self._in_flight[tenant] -= 1
            if not self._in_flight[tenant]:
                del self._in_flight[tenant]
            slots.release()
            self._leave(tenant)

        # The slot is the thread's: it is freed when the OS answers, not when the caller
        # stops waiting (a timeout cancels the wait, never the lookup itself).
        lookup.add_done_callback(done)
        return await asyncio.shield(lookup)

    def _leave(self, tenant: str) -> None:
        self._users[tenant] -= 1
        if self._users[tenant] <= 0:  # idle: forgotten, so memory does not grow per tenant
            del self._users[tenant]
            self._slots.pop(tenant, None)

    def lookups_in_flight(self, tenant: str) -> int:
        return self._in_flight[tenant]

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        key = (host, port, int(family))
        memo = self._memo.get(key)
        if memo is not None and memo[0] > self.clock():
            return list(memo[1])
        found = await self._lookup(host, port, family)
        allowed = [r for r in found if self.policy.problem(r["host"], r["port"]) is None]
        if found and not allowed:
            raise EgressBlocked(self.policy.problem(found[0]["host"], found[0]["port"]) or "")
        if allowed:  # failures are not kept: the next call looks again, as aiohttp's cache does
            self._memo.pop(key, None)
            self._memo[key] = (self.clock() + DNS_CACHE_SECONDS, allowed)
            while len(self._memo) > self.memo_names:
                del self._memo[next(iter(self._memo))]
        return list(allowed)

    async def close(self) -> None:
        await self.inner.close()


def socket_factory(policy: EgressPolicy) -> Callable[[Any], socket.socket]:
    """The last check, on the very address the socket is about to connect to."""
    def make(addr_info: Any) -> socket.socket:
        family, type_, proto, _, address = addr_info
        policy.check(str(address[0]), int(address[1]))
        return socket.socket(family=family, type=type_, proto=proto)
    return make


def client_session(policy: EgressPolicy, connections: int,
                   per_host: int) -> aiohttp.ClientSession:
    """The executor's HTTP client: guarded connections, no proxy from the environment, and no
    cookie jar — one session makes every tenant's calls, so a cookie one target set would ride
    along on the next call to its host, another tenant's too (tests/security/test_cookies.py)."""
    resolver = GuardedResolver(policy)
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=per_host,
                                     ttl_dns_cache=DNS_CACHE_SECONDS, resolver=resolver,
                                     socket_factory=socket_factory(policy))
    session = aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False,
                                    cookie_jar=aiohttp.DummyCookieJar())
    _RESOLVERS[session] = resolver
    return session


# The resolver of each session client_session made (ADR 0062), without reaching into aiohttp.
_RESOLVERS: weakref.WeakKeyDictionary[aiohttp.ClientSession, GuardedResolver] = \
    weakref.WeakKeyDictionary()


def resolver_of(session: aiohttp.ClientSession) -> GuardedResolver | None:
    """The resolver `session` looks names up with, if client_session made it."""
    try:
        return _RESOLVERS.get(session)
    except TypeError:  # not a session at all (a test's stand-in): no weak reference to it
        return None


def blocked_reason(exc: BaseException) -> str | None:
    """The egress refusal behind an exception aiohttp raised, however it wrapped it."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, EgressBlocked):
            return current.reason
        todo += [current.__cause__, current.__context__, getattr(current, "os_error", None)]
    return None
