"""Who a profile sample's CPU is charged to (bench/profiles.py)."""

from __future__ import annotations

from bench.profiles import owner, shares

LOOP = "main (duetime/cli.py:90);run_loop (duetime/loops.py:15);Runner.run (asyncio/runners.py:118)"


def test_the_deepest_library_frame_owns_the_sample() -> None:
    assert owner(f"{LOOP};Consumer.consume (executor/service.py:550);"
                 "AIOKafkaConsumer.getmany (aiokafka/consumer/consumer.py:1197);"
                 "wait (asyncio/tasks.py:428)") == "aiokafka"


def test_our_code_deepest_is_ours_and_only_loop_frames_are_the_event_loop() -> None:
    assert owner(f"{LOOP};Entry.run_id (duetime/due_set.py:167)") == "ours"
    assert owner(LOOP) == "event loop"
    assert owner("StreamReader._wait_for_data (asyncio/streams.py:540)") == "event loop"


def test_shares_add_up_and_ignore_lines_that_are_not_samples() -> None:
    raw = (f"{LOOP} 3\n{LOOP};Pipeline.execute (redis/asyncio/client.py:2262) 1\n"
           "garbage without a count\n\n")
    total, parts = shares(raw)
    assert total == 4
    assert parts == [("event loop", 75.0), ("redis", 25.0)]
    assert shares("") == (0, [])
