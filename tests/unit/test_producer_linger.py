"""Which producers wait to share a request (kafka_linger_ms) and which never do."""

from __future__ import annotations

from dispatcher.service import Settings as DispatcherSettings
from executor.service import Settings as ExecutorSettings
from executor.service import target_settings
from job_service.service import Settings as JobServiceSettings
from writer.service import Settings as WriterSettings


def test_records_linger_and_what_is_on_someones_clock_does_not() -> None:
    # Statuses come from many concurrent attempts: a few ms batch them (Kafka CPU -30 %).
    assert ExecutorSettings().kafka_linger_ms == 5
    # A create's 202 and a run request are waited for; the writer queues a batch's events
    # before it waits for them, and a client reading its new job waits for the writer.
    assert JobServiceSettings().kafka_linger_ms == 0
    assert DispatcherSettings().kafka_linger_ms == 0
    assert WriterSettings().kafka_linger_ms == 0


def test_a_kafka_target_never_lingers_whatever_the_executor_is_set_to() -> None:
    settings = ExecutorSettings(kafka_linger_ms=50, kafka_target_username="targets",
                                kafka_target_password="secret")
    target = target_settings(settings)
    assert target.kafka_linger_ms == 0
    assert (target.kafka_username, target.kafka_password) == ("targets", "secret")
