"""bench.sink: the nginx sink of the peer workloads logs what bench.lateness reads.

A real nginx (the one the stack's gateway uses), on a port of the benchmark range."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from bench.common import BENCH_PORTS
from bench.sink import PEER_PORTS, NginxSink, read_arrivals


async def test_every_hook_request_is_logged_with_its_receive_time_and_run_id(tmp_path: Path) -> None:
    sink = NginxSink(tmp_path).start()
    try:
        assert sink.port in BENCH_PORTS and sink.port not in PEER_PORTS
        before_ms = int(time.time() * 1000)
        async with aiohttp.ClientSession() as session:
            for path, key in (("/hook/duetime/ab12-0?due=5", "dt_run_a"),
                              ("/hook/duetime/ab12-0?due=5", "dt_run_a"),   # a repeat is logged too
                              ("/hook/duetime/ab12-r3?t0=1&every=1000&n=20", None),
                              ("/hook/other/zz-1?due=5", "x"),
                              ("/not-a-hook", "y")):
                headers = {"Idempotency-Key": key} if key else {}
                async with session.post(sink.url + path, json={"a": 1}, headers=headers) as resp:
                    assert resp.status == (204 if path.startswith("/hook/") else 404)
        after_ms = int(time.time() * 1000)
    finally:
        sink.stop()  # graceful: flushes the buffered log
    ours = read_arrivals(sink.log, "/hook/duetime/ab12-")
    assert [(a.uri, a.key, a.status) for a in ours] == [
        ("/hook/duetime/ab12-0?due=5", "dt_run_a", 204),
        ("/hook/duetime/ab12-0?due=5", "dt_run_a", 204),
        ("/hook/duetime/ab12-r3?t0=1&every=1000&n=20", "", 204)]
    # Epoch milliseconds (nginx's $msec), not seconds or a monotonic clock.
    assert all(before_ms - 1000 <= a.recv_ms <= after_ms + 1000 for a in ours)
    assert len(read_arrivals(sink.log, "/hook/")) == 4   # /not-a-hook is not logged


def test_a_sink_that_never_started_has_no_arrivals(tmp_path: Path) -> None:
    assert read_arrivals(NginxSink(tmp_path).log, "/hook/") == []
