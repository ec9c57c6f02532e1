"""The stack under benchmark: a wiped, freshly started one, and what its processes cost."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK_DIR = ROOT / ".stack"
STACK_SH = ROOT / "deploy" / "local" / "stack.sh"
# Kafka's jars (fetched once with maven) are code, not state: kept across wipes.
KEEP = {STACK_DIR / "kafka" / "libs"}


def wipe_and_start() -> None:
    """`make clean && make up` without refetching Kafka's jars: stop the stack, delete its state
    (Postgres, Kafka, Redis, keys, logs), start a new one. The peer harness does the same before
    each workload, so no backlog or bloat of one run reaches the next."""
    subprocess.run([str(STACK_SH), "down"], check=True, cwd=ROOT, timeout=300,
                   stdout=subprocess.DEVNULL)
    if STACK_DIR.exists():
        for path in STACK_DIR.iterdir():
            if path == STACK_DIR / "kafka":
                for sub in path.iterdir():
                    if sub not in KEEP:
                        _remove(sub)
            else:
                _remove(path)
    subprocess.run([str(STACK_SH), "up"], check=True, cwd=ROOT, timeout=900,
                   stdout=subprocess.DEVNULL)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
