"""S3Proxy for the tests: the one the developer started, or one started (and stopped) here."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.stack import ROOT

SCRIPT = ROOT / "deploy" / "local" / "s3proxy.sh"
ENV_FILE = ROOT / ".stack" / "s3proxy" / "env"


def _settings() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


@contextmanager
def s3proxy() -> Iterator[dict[str, str]]:
    """The DUETIME_OBJECTS_* settings of a running S3Proxy on 127.0.0.1:DUETIME_S3_PORT."""
    env = {**os.environ}
    if subprocess.run([str(SCRIPT), "status"], env=env, check=False).returncode == 0:
        yield _settings()
        return
    subprocess.run([str(SCRIPT), "start"], env=env, check=True, timeout=600)
    try:
        yield _settings()
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, check=True, timeout=60)
