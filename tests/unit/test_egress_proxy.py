"""The command egress proxy's request parsing (ADR 0038): what it forwards, and what it refuses."""

from __future__ import annotations

import pytest

from executor.command.egress_proxy import (
    BadRequest,
    Destination,
    connect_destination,
    forward_destination,
    forwarded_head,
    parse_head,
)


def test_a_request_head_is_split_into_method_target_and_headers() -> None:
    head = b"GET http://example.org/a?b=1 HTTP/1.1\r\nHost: example.org\r\nX-A:  1 \r\n\r\n"
    assert parse_head(head) == ("GET", "http://example.org/a?b=1",
                                [("Host", "example.org"), ("X-A", "1")])


@pytest.mark.parametrize("head", [
    b"GET http://a/ HTTP/2\r\n\r\n",
    b"GET  http://a/ HTTP/1.1\r\n\r\n",
    b"GET http://a/\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nno colon\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\n: empty name\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX : space before colon\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
])
def test_malformed_heads_are_refused(head: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_head(head)


@pytest.mark.parametrize(("target", "dest"), [
    ("example.org:443", Destination("example.org", 443)),
    ("10.0.0.1:22", Destination("10.0.0.1", 22)),
    ("[::1]:8443", Destination("::1", 8443)),
])
def test_connect_targets(target: str, dest: Destination) -> None:
    assert connect_destination(target) == dest


@pytest.mark.parametrize("target", ["example.org", ":443", "a:0", "a:65536", "a:-1", "a:+1",
                                    "[::1]", "[::1]x:1", "a:\uff11\uff12", "a:\u00b2"])
def test_bad_connect_targets(target: str) -> None:
    with pytest.raises(BadRequest):
        connect_destination(target)


@pytest.mark.parametrize(("target", "dest"), [
    ("http://example.org/x", Destination("example.org", 80)),
    ("http://example.org:8080", Destination("example.org", 8080)),
    ("http://[::1]:81/", Destination("::1", 81)),
])
def test_forward_targets(target: str, dest: Destination) -> None:
    assert forward_destination(target) == dest


@pytest.mark.parametrize("target", ["https://example.org/", "/relative", "ftp://a/",
                                    "http:///nohost", "http://a:99999/", "http://[::1/"])
def test_bad_forward_targets(target: str) -> None:
    with pytest.raises(BadRequest):
        forward_destination(target)


def test_the_forwarded_request_drops_proxy_and_hop_by_hop_headers() -> None:
    head = forwarded_head("POST", "http://a/p?q=1", [
        ("Host", "a"), ("Proxy-Authorization", "x"), ("Proxy-Connection", "keep-alive"),
        ("Connection", "keep-alive"), ("Content-Length", "2")])
    assert head == (b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                    b"Connection: close\r\n\r\n")
