"""One run's way out of its sandbox: an HTTP forward proxy on a unix socket (ADR 0038).

The sandbox has its own empty network namespace; the relay inside it (`relay.py`) hands each
connection to this proxy, which runs in the executor. `CONNECT host:port` opens a tunnel (TLS
stays end to end); an absolute-form request (`GET http://host/path`) is forwarded as plain
HTTP. Every destination is resolved and checked by `executor.egress` — the webhooks' policy,
the same resolver and the same last check on the address just before `connect()` — so a
refused one gets a 403 "blocked by egress policy: <kind of address>" and is recorded for the
run's status. The resolved address itself is only logged, as for webhooks (ADR 0018).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from executor.command.relay import pipe
from executor.egress import EgressBlocked, EgressPolicy, GuardedResolver, socket_factory

log = logging.getLogger(__name__)
MAX_HEAD = 64 * 1024          # request line and headers
MAX_CONNECTIONS = 64          # open at once, per run
CONNECT_SECONDS = 10.0
BUFFER = 64 * 1024
# Hop-by-hop headers, and the proxy's own: never forwarded to the destination.
_DROPPED = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
            "proxy-authenticate", "te", "trailer", "upgrade"}


class BadRequest(ValueError):
    """A request this proxy does not forward; the message goes back in the answer."""


@dataclass(frozen=True)
class Destination:
    host: str
    port: int


@dataclass
class EgressProxy:
    """Serves one run on `path`; `refused` holds why connections were refused (first 10)."""

    policy: EgressPolicy
    path: Path
    run: str = ""
    refused: list[str] = field(default_factory=list)
    refusals: int = 0
    _server: asyncio.Server | None = None
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))
    _resolver: GuardedResolver | None = None
    _clients: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._resolver = GuardedResolver(self.policy)
        self._server = await asyncio.start_unix_server(self._handle, str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # Tunnels still open belong to a run that is over: cut them.
        for writer in list(self._clients):
            writer.transport.abort()
        if self._resolver is not None:
            await self._resolver.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            await _answer(writer, 503, f"at most {MAX_CONNECTIONS} connections at once")
            return
        async with self._slots:
            self._clients.add(writer)
            try:
                await self._serve(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass  # the client or the destination went away
            finally:
                self._clients.discard(writer)
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, lines = parse_head(head)
            dest = connect_destination(target) if method == "CONNECT" else forward_destination(target)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, BadRequest) as exc:
            await _answer(writer, 400, str(exc) if isinstance(exc, BadRequest) else "bad request")
            return
        try:
            up_reader, up_writer = await self._connect(dest)
        except EgressBlocked as exc:
            self._refuse(exc.reason, dest)
            await _answer(writer, 403, str(exc), exc)
            return
        except (OSError, TimeoutError, ValueError):  # ValueError: a name getaddrinfo refuses
            await _answer(writer, 502, f"cannot connect to {dest.host[:255]!r} port {dest.port}")
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(forwarded_head(method, target, lines))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        up_writer.close()

    async def _connect(self, dest: Destination) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
        """The first of the destination's allowed addresses that answers."""
        assert self._resolver is not None
        found = await self._resolver.resolve(dest.host, dest.port, socket.AF_UNSPEC)
        make = socket_factory(self.policy)
        loop = asyncio.get_running_loop()
        error: OSError = OSError(f"no address for {dest.host}")
        for result in found:
            address = (result["host"], result["port"])
            sock = make((result["family"], socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address))
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, address), CONNECT_SECONDS)
            except (OSError, TimeoutError) as exc:
                sock.close()
                error = OSError(str(exc))
                continue
            return await asyncio.open_connection(sock=sock, limit=BUFFER)
        raise error

    def _refuse(self, reason: str, dest: Destination) -> None:
        self.refusals += 1
        if len(self.refused) < 10:
            self.refused.append(reason)
        log.info("command egress refused", extra={"run_id": self.run, "host": dest.host,
                                                  "port": dest.port, "reason": reason})


def parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """The method, target and headers of a request head (without its final blank line)."""
    if len(head) > MAX_HEAD:
        raise BadRequest("request head too large")
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest("bad request") from None
    first, *rest = text[:-4].split("\r\n")
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("not an HTTP/1.x request line")
    headers = []
    for line in rest:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in line for c in "\r\n\0"):
            raise BadRequest("malformed header line")
        headers.append((name, value.strip()))
    return parts[0], parts[1], headers


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise BadRequest(f"bad port {text[:10]!r}")
    return int(text)


def connect_destination(target: str) -> Destination:
    """`host:port` or `[v6]:port` of a CONNECT."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        if not rest.startswith(":"):
            raise BadRequest("CONNECT needs host:port")
        return Destination(host, _port(rest[1:]))
    host, sep, port = target.rpartition(":")
    if not sep or not host:
        raise BadRequest("CONNECT needs host:port")
    return Destination(host, _port(port))


def forward_destination(target: str) -> Destination:
    """The host and port of an absolute-form `http://` request target."""
    try:
        url = urlsplit(target)
        port = url.port or 80
    except ValueError:
        raise BadRequest("bad request target") from None
    if url.scheme != "http" or not url.hostname:
        raise BadRequest("only http:// URLs are forwarded (https goes through CONNECT)")
    return Destination(url.hostname, port)


def forwarded_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """The request as the destination gets it: origin-form, no proxy or hop-by-hop headers,
    one request per connection (the proxy does not parse what follows)."""
    url = urlsplit(target)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [f"{name}: {value}" for name, value in headers if name.lower() not in _DROPPED]
    lines = [f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, status: int, message: str,
                  refusal: EgressBlocked | None = None) -> None:
    # A refusal's reason is the status line's own reason phrase: clients quote that one
    # ("Tunnel connection failed: 403 blocked by egress policy: private address").
    reason = message if isinstance(refusal, EgressBlocked) else {
        400: "Bad Request", 502: "Bad Gateway", 503: "Service Unavailable"}[status]
    body = (message + "\n").encode()
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()
