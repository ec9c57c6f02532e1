"""Runs INSIDE a sandbox with `network: true` (ADR 0038), by the host's /usr/bin/python3.

`relay.py PORT SOCKET -- ARGV...`: listens on 127.0.0.1:PORT in the sandbox's own loopback,
then execs ARGV; a forked child relays every connection to that port, byte for byte, to the
run's egress proxy on the unix socket SOCKET. The sandbox's network namespace has nothing but
`lo`, so the proxy (on the host, where the egress policy is checked) is the only way out.

Standard library only, no duetime import: it runs in the sandbox, not in the executor.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

BUFFER = 64 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies until the end of `reader`, then half-closes `writer` (the egress proxy's too)."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                 path: str) -> None:
    try:
        proxy_reader, proxy_writer = await asyncio.open_unix_connection(path)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, proxy_writer), pipe(proxy_reader, client_writer))
    proxy_writer.close()
    client_writer.close()


async def _serve(listener: socket.socket, path: str) -> None:
    server = await asyncio.start_server(lambda r, w: _relay(r, w, path), sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: relay.py PORT SOCKET -- ARGV...", file=sys.stderr)
        return 2
    port, path, command = int(argv[0]), argv[1], argv[3:]
    # Bound before the command starts, so its first request finds the relay listening.
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    if os.fork() == 0:
        # The relay holds none of the command's streams: the run's output ends with it.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        asyncio.run(_serve(listener, path))
        return 0
    listener.close()
    try:
        os.execvp(command[0], command)  # noqa: S606 - the run's own argv, in its sandbox
    except OSError as exc:
        print(f"{command[0]}: {exc.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
