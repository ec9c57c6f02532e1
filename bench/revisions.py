"""Measure a git revision's code beside the working tree's, in one benchmark run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def figures_at_revision(rev: str, module: str, *args: str) -> Any:
    """`python -m <module> <args> --json` run with the duetime/ and schemas/ of git revision
    `rev` (extracted to a temporary directory, in a child process): its last line, parsed."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "duetime", "schemas"],
                             check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        # The child finds the revision's packages first (its working directory leads sys.path)
        # and the bench itself in the project.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)])}
        out = subprocess.run([sys.executable, "-m", module, *args, "--json"], cwd=tmp, env=env,
                             check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def add_revision_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--against", action="append", default=[], metavar="REV",
                        help="also measure this git revision (repeatable)")
    parser.add_argument("--json", action="store_true", help="print this tree's figures as JSON only")


def figures_per_column(args: argparse.Namespace, module: str, measure: Callable[[], Any],
                       *child_args: str) -> tuple[list[str], list[Any]] | None:
    """The figures of each `--against` revision and of the working tree, with their column
    names; None when this run is the child (`--json`: it printed its figures)."""
    if args.json:
        print(json.dumps(measure()))
        return None
    columns = [*args.against, "working tree"]
    return columns, [figures_at_revision(rev, module, *child_args) for rev in args.against] \
        + [measure()]
