"""The services' logs rotate (ADR 0034): supervisord writes each one to .stack/logs/<service>.log
and keeps a bounded number of bounded files, so a busy stack cannot fill the disk."""

from __future__ import annotations

import configparser
import os
import subprocess

import pytest

from tests.support.stack import ROOT, SERVICES, STACK, stack

PROGRAMS = ROOT / ".stack" / "supervisor" / "programs"
MULTIPLIERS = {"KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _bytes(value: str) -> int:
    """supervisord's byte sizes: 50MB, 512KB, or a plain number."""
    value = value.strip().upper()
    for suffix, factor in MULTIPLIERS.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


@pytest.mark.skipif(os.environ.get("DUETIME_TEST_ENGINE") == "containers",
                    reason="the compose stack's logs are the container engine's")
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_log_is_written_by_supervisord_and_rotates(
    env: dict[str, str], service: str
) -> None:
    conf = configparser.RawConfigParser()
    assert conf.read(PROGRAMS / f"{service}.conf"), f"{service} is not a supervisord program"
    program = conf[f"program:{service}"]
    assert program["stdout_logfile"] == str(ROOT / ".stack" / "logs" / f"{service}.log")
    assert program["redirect_stderr"] == "true"  # tracebacks land in the same, rotated file
    assert 0 < _bytes(program["stdout_logfile_maxbytes"]) <= 1024**3
    assert 0 < int(program["stdout_logfile_backups"]) <= 20


@pytest.mark.skipif(os.environ.get("DUETIME_TEST_ENGINE") == "containers",
                    reason="the compose stack's logs are the container engine's")
def test_a_service_log_rotates_at_its_size_and_keeps_its_backups(env: dict[str, str]) -> None:
    """An extra executor whose log may hold 512 bytes: its own start and stop lines overflow it."""
    instance = "executor-3"
    logs = ROOT / ".stack" / "logs"
    for old in logs.glob(f"{instance}.log*"):
        old.unlink()
    small = {**os.environ, "DUETIME_SERVICE_LOG_MAX_BYTES": "512", "DUETIME_SERVICE_LOG_BACKUPS": "2"}
    try:
        for _ in range(2):
            subprocess.run([str(STACK), "start", instance], check=True, timeout=120, cwd=ROOT, env=small,
                           stdout=subprocess.DEVNULL)
            subprocess.run([str(STACK), "stop", instance], check=True, timeout=120, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
    finally:
        stack("stop", instance)
    kept = sorted(p.name for p in logs.glob(f"{instance}.log*"))
    assert kept == [f"{instance}.log", f"{instance}.log.1", f"{instance}.log.2"]
    # What the service wrote went through supervisord into the rotated files.
    assert b'"service":"executor"' in (logs / f"{instance}.log.1").read_bytes()
