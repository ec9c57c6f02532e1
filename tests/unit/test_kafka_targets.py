"""The Kafka target topic policy and the tenant of ingress commands (ADR 0015), without Kafka."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from duetime.kafka_targets import TopicPolicy
from duetime.settings import KafkaTargetSettings
from executor.outcome import Outcome, should_retry
from schemas.api import RetryPolicy
from schemas.topics import ingress_tenant, ingress_topic
from writer.service import ingress_command

POLICY = TopicPolicy(KafkaTargetSettings(kafka_target_topics={"acme": ["acme.*", "shared.billing"]}))


@pytest.mark.parametrize("topic", ["duetime.jobs.commands", "duetime.runs", "duetime.ingress.acme",
                                   "__consumer_offsets", "__transaction_state"])
def test_internal_topics_are_refused_whatever_the_allowlist(topic: str) -> None:
    wide = TopicPolicy(KafkaTargetSettings(kafka_target_topics={"acme": ["*"]}))
    assert "internal" in (wide.refusal("acme", topic) or "")


@pytest.mark.parametrize(("tenant", "topic", "allowed"), [
    ("acme", "acme.orders", True),
    ("acme", "shared.billing", True),
    ("acme", "shared.billing2", False),
    ("acme", "other.orders", False),
    ("dev", "dev.orders", True),  # not listed: "<tenant>.*"
    ("dev", "devx.orders", False),
    ("dev", "acme.orders", False),
])
def test_the_allowlist_and_its_default(tenant: str, topic: str, allowed: bool) -> None:
    assert (POLICY.refusal(tenant, topic) is None) == allowed


# ADR 0051: tenant names may contain dots, so "<tenant>.*" alone would let tenant "acme"
# publish into "acme.corp.orders" of tenant "acme.corp".
NESTED = TopicPolicy(KafkaTargetSettings(kafka_target_topics={"acme.corp": ["acme.corp.*"],
                                                              "shared": ["dev.reports"]}))


@pytest.mark.parametrize(("tenant", "topic", "refused_because"), [
    ("acme", "acme.corp.orders", "listed for another tenant"),
    ("acme", "acme.corp.x.y", "listed for another tenant"),
    ("dev", "dev.reports", "listed for another tenant"),
    ("beta.eu", "beta.eu.orders", "no default topics"),  # dotted and unlisted: none
    ("beta.eu", "anything", "no default topics"),
])
def test_no_two_tenants_share_a_topic_by_default(tenant: str, topic: str,
                                                 refused_because: str) -> None:
    assert refused_because in (NESTED.refusal(tenant, topic) or "")


@pytest.mark.parametrize(("tenant", "topic"), [
    ("acme", "acme.orders"), ("acme", "acme.corpx.orders"), ("acme", "acme.corp"),
    ("acme.corp", "acme.corp.orders"), ("shared", "dev.reports"), ("dev", "dev.reports2"),
])
def test_what_each_tenant_keeps(tenant: str, topic: str) -> None:
    assert NESTED.refusal(tenant, topic) is None


def test_a_listed_tenant_with_no_globs_may_use_nothing() -> None:
    closed = TopicPolicy(KafkaTargetSettings(kafka_target_topics={"dev": []}))
    assert "allowed topics (none)" in (closed.refusal("dev", "dev.orders") or "")
    assert closed.globs_for("dev") == [] and closed.globs_for("a.b") == []


_NAMES = st.sampled_from(["a", "b", "ab", "a.b", "a.b.a", "b.a", "a-b"])


@given(tenants=st.lists(_NAMES, min_size=2, max_size=4, unique=True),
       listed=st.dictionaries(_NAMES, st.lists(st.sampled_from(["a.*", "a.b.*", "b.a", "*"]),
                                                max_size=2), max_size=2),
       topic=st.builds("{}.{}".format, _NAMES, st.text("ab.", min_size=1, max_size=4)))
def test_a_topic_two_tenants_may_use_is_one_the_operator_listed_for_both(
        tenants: list[str], listed: dict[str, list[str]], topic: str) -> None:
    policy = TopicPolicy(KafkaTargetSettings(kafka_target_topics=listed))
    users = [t for t in tenants if policy.refusal(t, topic) is None]
    if len(users) > 1:
        assert all(t in listed for t in users), (users, topic)


def test_the_allowlist_is_read_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUETIME_KAFKA_TARGET_TOPICS", '{"t": ["t-*"]}')
    assert TopicPolicy(KafkaTargetSettings()).globs_for("t") == ["t-*"]


def test_a_refused_target_is_not_retried() -> None:
    refused = Outcome("failed", error="refused by the Kafka target policy", retryable=False)
    assert not should_retry(refused, 1, RetryPolicy(max_attempts=5))
    assert should_retry(Outcome("failed"), 1, RetryPolicy(max_attempts=5))


def test_ingress_topics_name_their_tenant() -> None:
    assert ingress_tenant(ingress_topic("tenant-b")) == "tenant-b"
    assert ingress_tenant("duetime.jobs.commands") is None
    assert ingress_tenant("duetime.ingress.") is None


def _command(**fields: object) -> bytes:
    return orjson.dumps({"command_id": "c1", "type": "cancel", "job_id": "j1",
                         "issued_at": "2026-01-01T00:00:00Z", **fields})


def test_an_ingress_command_takes_the_topics_tenant() -> None:
    assert ingress_command(_command(), "tenant-b").tenant == "tenant-b"
    assert ingress_command(_command(tenant="tenant-b"), "tenant-b").tenant == "tenant-b"


@pytest.mark.parametrize("claimed", ["dev", "", 7, None])
def test_an_ingress_command_naming_another_tenant_is_refused(claimed: object) -> None:
    with pytest.raises((ValueError, ValidationError), match="tenant"):
        ingress_command(_command(tenant=claimed), "tenant-b")
