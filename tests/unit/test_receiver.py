"""deploy/local/receiver.py: the README's try-it-out webhook receiver answers and prints."""

from __future__ import annotations

import http.client
import threading

import pytest

from tests.support.scripts import load_script

receiver = load_script("deploy/local/receiver.py")


def test_it_answers_204_and_prints_one_line_with_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    server = receiver.serve(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        client.request("POST", "/hook", body=b'{"hello": 1}',
                       headers={"X-Duetime-Run-Id": "r1", "X-Duetime-Job-Id": "j1"})
        assert client.getresponse().status == 204
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    (line,) = capsys.readouterr().out.splitlines()
    assert " POST /hook job-id=j1 run-id=r1 body=b'{\"hello\": 1}'" in line
