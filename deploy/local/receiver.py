"""A webhook receiver for trying duetime out: answers every request 204 and prints one line each.

    make receiver                      # listens on 127.0.0.1:18999, as the README's examples use
    python deploy/local/receiver.py 18950

The local stack lets webhooks reach loopback ports 18900-18999 only (DUETIME_EGRESS_ALLOW), so
the port must be one of those for a job to reach it. Standard library only; not for production.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 18999
SHOWN_HEADERS = ("X-Duetime-Job-Id", "X-Duetime-Run-Id", "X-Duetime-Scheduled-At",
                 "X-Duetime-Attempt")


class Handler(BaseHTTPRequestHandler):
    server_version = "duetime-receiver"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)) if length > 0 else b""
        ids = " ".join(f"{h.removeprefix('X-Duetime-').lower()}={self.headers[h]}"
                       for h in SHOWN_HEADERS if self.headers.get(h))
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        print(f"{now} {self.command} {self.path} {ids} body={body[:200]!r}", flush=True)
        self.send_response(204)
        self.end_headers()

    do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        """One line per request is printed by _answer; the base class's would be a second."""


def serve(port: int = PORT) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else PORT
    server = serve(port)
    print(f"receiving webhooks on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
