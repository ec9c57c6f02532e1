"""The webhook sink of the peer workloads: an nginx on 127.0.0.1 that logs every request.

The same sink as ../shared/peer-bench (nginx answering `/hook/...` with 204 and one access-log
line per request: `$msec \\t $status \\t $method \\t $uri \\t $http_idempotency_key`), so lateness
is measured the same way: nginx's receive clock, 1 ms resolution, off the benchmark's own process.
Each run starts its own sink and log; `stop()` ends nginx gracefully, which flushes the log.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import BENCH_PORTS

# The peer harness's own servers (sink, Redis, Postgres) use these: never take them.
PEER_PORTS = frozenset({28080, 26379, 25432})

# The start of every benchmark nginx.conf: one worker, everything under the run's directory.
HEAD = """\
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
"""

CONFIG = HEAD + """\
    log_format bench '$msec\\t$status\\t$request_method\\t$request_uri\\t$http_idempotency_key';
    access_log {d}/access.log bench buffer=256k flush=1s;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /hook/ {{ return 204; }}
        location / {{ access_log off; return 404; }}
    }}
}}
"""


@dataclass(frozen=True)
class Arrival:
    """One request the sink received: when (epoch ms), what, and the firing's run id."""

    recv_ms: int
    uri: str
    status: int
    key: str


def parse_line(line: str) -> Arrival | None:
    """An access-log line as an Arrival; None for a line that is not one (torn, foreign)."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 4:
        return None
    try:
        recv_ms = round(float(parts[0]) * 1000)
        status = int(parts[1])
    except ValueError:
        return None
    key = parts[4] if len(parts) > 4 and parts[4] != "-" else ""
    return Arrival(recv_ms, parts[3], status, key)


def read_arrivals(log: Path, prefix: str) -> list[Arrival]:
    """Every arrival whose URI starts with `prefix`, in log order."""
    if not log.exists():
        return []
    out = []
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            arrival = parse_line(line)
            if arrival is not None and arrival.uri.startswith(prefix):
                out.append(arrival)
    return out


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class NginxSink:
    """One nginx sink under `directory`, on a free port of the benchmark range (`config`: another
    nginx.conf template with the same `{d}` and `{port}` fields, and `fields` for its own)."""

    def __init__(self, directory: Path, config: str = CONFIG, **fields: object) -> None:
        self.dir = directory
        self.config = config
        self.fields = fields
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "access.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NginxSink:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        ports = [p for p in BENCH_PORTS if p not in PEER_PORTS]
        for port in random.sample(ports, 20):
            if not _port_is_free(port):
                continue
            (self.dir / "nginx.conf").write_text(
                self.config.format(d=self.dir, port=port, **self.fields))
            with (self.dir / "error.log").open("ab") as err:  # nginx keeps its own copy
                proc = subprocess.Popen([binary, "-p", f"{self.dir}/", "-e",
                                         str(self.dir / "error.log"), "-c",
                                         str(self.dir / "nginx.conf")],
                                        stdout=err, stderr=err, start_new_session=True)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and proc.poll() is None and _port_is_free(port):
                time.sleep(0.05)
            if proc.poll() is None and not _port_is_free(port):
                self.proc, self.port = proc, port
                return self
            self._end(proc)  # lost the port to someone else: try another
        raise RuntimeError(f"the nginx sink did not start (see {self.dir / 'error.log'})")

    def stop(self) -> None:
        """Graceful stop (SIGQUIT): the workers flush the buffered access log before exiting."""
        if self.proc is not None:
            self._end(self.proc)
            self.proc = None

    @staticmethod
    def _end(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group start_new_session made for this nginx
            proc.wait(5)
