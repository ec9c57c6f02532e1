"""The firing path's JSON (schemas/event_json.py) is, byte for byte, what the models write.

The dispatcher and the executor encode run requests and statuses from plain values; the
models in schemas/events.py stay the contract. Over many generated firings the bytes must be
those of `kafka.encode(Model(...))`, so neither side can drift without this failing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.requests import queued_status, run_request
from duetime import kafka
from duetime.due_set import Entry, Flag, Popped
from duetime.loading import run_template
from schemas.api import JobSpec
from schemas.event_json import holds_free_text, run_request_json, status_json
from schemas.events import RunRequested, RunStatusChanged

EXAMPLES = settings(max_examples=300, deadline=None)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
text = st.text(st.characters(codec="ascii", exclude_characters="\x00\r\n"), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8)
headers = st.dictionaries(st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True), text,
                          max_size=3)
http_targets = st.fixed_dictionaries(
    {"type": st.just("http"),
     "url": st.sampled_from(["http://127.0.0.1:18999/hook", "https://example.com/a?b=1"])},
    optional={"method": st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
              "headers": headers, "body": json_values,
              "timeout_seconds": st.floats(min_value=0.001, max_value=3600),
              "success_codes": st.none() | st.lists(st.integers(100, 599), max_size=3),
              "store_response": st.booleans()})
kafka_targets = st.fixed_dictionaries(
    {"type": st.just("kafka"), "topic": st.from_regex(r"t\.[a-z]{1,8}", fullmatch=True)},
    optional={"key": st.none() | text, "value": json_values, "headers": headers})
retries = st.fixed_dictionaries({}, optional={
    "max_attempts": st.integers(1, 100), "initial_delay_seconds": st.floats(0, 86400),
    "max_delay_seconds": st.floats(0, 86400), "multiplier": st.floats(1, 100),
    "jitter": st.booleans()})
# Instants in ms (as the due-set holds them) and in µs (as utcnow() gives them).
instants_ms = st.integers(0, 4_102_444_800_000)
instants = st.integers(0, 4_102_444_800_000_000).map(
    lambda us: datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000))


@st.composite
def popped_entries(draw: st.DrawFn) -> Popped:
    spec = JobSpec.model_validate({
        "name": "n", "schedule": {"type": "delay", "seconds": 1},
        "target": draw(http_targets | kafka_targets), "retry": draw(retries),
        "priority": draw(st.integers(0, 9)),
        "overlap": draw(st.sampled_from(["allow", "forbid", "replace"]))})
    job_id = draw(ids)
    entry = Entry(job_id, draw(st.integers(1, 2**31)), draw(instants_ms), draw(st.integers(1, 100)),
                  spec.priority, draw(st.sampled_from(list(Flag))))
    template = run_template(job_id, draw(ids), entry.version, spec)
    # As the dispatcher gets it: stored as JSON in Redis, read back by pop_due.
    return Popped("run", entry, entry.member(), draw(instants_ms), orjson.loads(orjson.dumps(template)))


@EXAMPLES
@given(popped_entries(), instants)
def test_run_requests_and_queued_statuses_are_the_models_bytes(popped: Popped, now: datetime) -> None:
    values = run_request(popped, now)
    model = RunRequested(**values)
    assert run_request_json(values) == kafka.encode(model)
    assert queued_status(values) == kafka.encode(RunStatusChanged(
        run_id=model.run_id, job_id=model.job_id, tenant=model.tenant,
        scheduled_at=model.scheduled_at, attempt=model.attempt, status="queued",
        at=model.dispatched_at, queued_at=model.dispatched_at))


statuses = st.fixed_dictionaries(
    {"run_id": ids, "job_id": ids, "tenant": ids, "scheduled_at": instants,
     "attempt": st.integers(1, 2**31 - 1),
     "status": st.sampled_from(["queued", "running", "succeeded", "failed", "cancelled",
                                "timed_out", "skipped"]),
     "at": instants},
    optional={"queued_at": st.none() | instants, "started_at": st.none() | instants,
              "finished_at": st.none() | instants,
              "lateness_ms": st.none() | st.integers(-2**63, 2**63 - 1),
              "duration_ms": st.none() | st.integers(0, 2**40),
              "http_status": st.none() | st.integers(0, 999),
              "executor_id": st.none() | text, "final": st.booleans(),
              "retry_at": st.none() | instants})


@EXAMPLES
@given(statuses)
def test_statuses_are_the_models_bytes(values: dict[str, Any]) -> None:
    assert status_json(**values) == kafka.encode(RunStatusChanged(**values))


@pytest.mark.parametrize("field", ["error", "response_excerpt", "reason"])
def test_free_text_is_left_to_the_model(field: str) -> None:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"run_id": "r", "job_id": "j", "tenant": "t", "scheduled_at": now,
                              "attempt": 1, "status": "failed", "at": now, field: "a\x00b"}
    assert holds_free_text(values)
    with pytest.raises(ValueError, match="free text"):
        status_json(**values)


def test_a_template_without_a_target_object_is_refused() -> None:
    now = datetime.now(UTC)
    entry = Entry("j", 1, 0, 1, 5)
    bad = Popped("run", entry, entry.member(), 0,
                 {"tenant": "t", "target": "http://x", "retry": {}})
    with pytest.raises(TypeError):
        run_request_json(run_request(bad, now))
