"""The assertion the gateway signs and the services verify (ADR 0017), with a clock under test
control; the gateway's side (njs) is exercised through the real nginx in tests/security."""

from __future__ import annotations

import pytest

from duetime.tenant_assertion import AssertionRejected, TenantAssertions

SECRET = "unit-test-gateway-secret-0123456789"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_fresh_assertion_names_its_tenant(clock: Clock) -> None:
    signer = TenantAssertions(SECRET, clock=clock)
    assert signer.verify(signer.sign("tenant-b", "rid1", "POST"), "rid1", "POST") == "tenant-b"


@pytest.mark.parametrize("seconds", [-31, 31])
def test_more_than_the_allowed_skew_either_way_is_rejected(clock: Clock, seconds: int) -> None:
    signer = TenantAssertions(SECRET, max_age_seconds=30, clock=clock)
    assertion = signer.sign("dev", "rid1", "GET")
    clock.now += seconds
    with pytest.raises(AssertionRejected, match="expired"):
        signer.verify(assertion, "rid1", "GET")


def test_within_the_skew_it_is_accepted(clock: Clock) -> None:
    signer = TenantAssertions(SECRET, max_age_seconds=30, clock=clock)
    assertion = signer.sign("dev", "rid1", "GET")
    clock.now += 29
    assert signer.verify(assertion, "rid1", "GET") == "dev"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda a: a.replace(":dev:", ":victim:"), "bad signature"),
    (lambda a: a[:-2] + ("AA" if not a.endswith("AA") else "BB"), "bad signature"),
    (lambda a: "v2" + a[2:], "malformed"),
    (lambda a: a + ":extra", "malformed"),
    (lambda a: "", "malformed"),
])
def test_a_changed_assertion_is_rejected(clock: Clock, change: object, reason: str) -> None:
    signer = TenantAssertions(SECRET, clock=clock)
    assertion = signer.sign("dev", "rid1", "GET")
    with pytest.raises(AssertionRejected, match=reason):
        signer.verify(change(assertion), "rid1", "GET")  # type: ignore[operator]


def test_another_secret_another_request_id_or_method_is_rejected(clock: Clock) -> None:
    signer = TenantAssertions(SECRET, clock=clock)
    forged = TenantAssertions("someone-else-entirely-0123456789", clock=clock)
    with pytest.raises(AssertionRejected, match="bad signature"):
        signer.verify(forged.sign("dev", "rid1", "GET"), "rid1", "GET")
    with pytest.raises(AssertionRejected, match="request id"):
        signer.verify(signer.sign("dev", "rid1", "GET"), "rid2", "GET")
    with pytest.raises(AssertionRejected, match="bad signature"):
        signer.verify(signer.sign("dev", "rid3", "GET"), "rid3", "DELETE")


def test_an_assertion_is_accepted_once(clock: Clock) -> None:
    signer = TenantAssertions(SECRET, clock=clock)
    assertion = signer.sign("dev", "rid1", "GET")
    assert signer.verify(assertion, "rid1", "GET") == "dev"
    with pytest.raises(AssertionRejected, match="replayed"):
        signer.verify(assertion, "rid1", "GET")


def test_request_ids_are_forgotten_once_their_assertions_expired(clock: Clock) -> None:
    signer = TenantAssertions(SECRET, max_age_seconds=30, clock=clock)
    signer.verify(signer.sign("dev", "old", "GET"), "old", "GET")
    clock.now += 61
    signer.verify(signer.sign("dev", "new", "GET"), "new", "GET")
    assert list(signer._seen) == ["new"]


def test_without_a_secret_nothing_verifies(clock: Clock) -> None:
    signer = TenantAssertions("", clock=clock)
    with pytest.raises(AssertionRejected, match="no gateway secret"):
        signer.verify(signer.sign("dev", "rid1", "GET"), "rid1", "GET")
