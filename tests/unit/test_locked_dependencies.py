"""The lockfiles in requirements/ (ADR 0021) are complete, hash-checked, index-free and current.

Static checks, no network: every locked requirement carries hashes (so `pip install
--require-hashes` accepts it), no lockfile names an index or a URL, every pin of pyproject.toml is
locked at its version (a stale lock fails here: run `make lock`), and the runtime lock holds none
of the test tools, which no runtime module imports.
"""

from __future__ import annotations

import ast
import re
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
REQS = REPO / "requirements"
LOCKS = ("bootstrap", "dev", "runtime", "faust-bench")
# Modules only tests and benchmarks may import: the dev extra's HTTP client and the bench extra.
TEST_ONLY_MODULES = {"httpx", "faust"}
LOCATION = re.compile(r"://|^\s*(-i|-f|--index-url|--extra-index-url|--find-links)\b", re.MULTILINE)


@cache
def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(group: str) -> dict[str, str]:
    """`name -> version` of one dependency list of pyproject.toml ("" is the runtime one)."""
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    specs = project["dependencies"] if not group else project["optional-dependencies"][group]
    pins: dict[str, str] = {}
    for spec in specs:
        req = Requirement(spec)
        (pin,) = req.specifier
        assert pin.operator == "==", f"pyproject.toml pins exactly: {spec}"
        pins[canonicalize_name(req.name)] = pin.version
    return pins


@cache
def _blocks(lock: str) -> tuple[str, ...]:
    """One string per requirement of a lockfile, its continuation lines joined, comments dropped."""
    lines = [line.split("#", 1)[0].rstrip() for line in (REQS / f"{lock}.txt").read_text().splitlines()]
    text = "\n".join(line for line in lines if line.strip())
    return tuple(block for block in re.sub(r"\\\n\s*", " ", text).splitlines() if block.strip())


def _locked(lock: str) -> dict[str, str]:
    locked: dict[str, str] = {}
    for block in _blocks(lock):
        pinned = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+).*", block)
        assert pinned, f"requirements/{lock}.txt: not an exact pin: {block.split()[0]}"
        locked[canonicalize_name(pinned[1])] = pinned[2]
    return locked


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_requirement_is_pinned_with_hashes(lock: str) -> None:
    unhashed = [b.split()[0] for b in _blocks(lock) if "==" not in b or "--hash=sha256:" not in b]
    assert _blocks(lock), f"requirements/{lock}.txt locks nothing"
    assert not unhashed, f"requirements/{lock}.txt: without an exact pin and hashes: {unhashed}"


@pytest.mark.parametrize("lock", [*LOCKS, "bootstrap.in"])
def test_lockfiles_name_no_index_or_url(lock: str) -> None:
    path = REQS / (lock if lock.endswith(".in") else f"{lock}.txt")
    found = LOCATION.findall(path.read_text())
    assert not found, f"{path.name} says where packages come from ({found}): pip's configuration does"


@pytest.mark.parametrize(("group", "locks"), [("", ("runtime", "dev")), ("dev", ("dev",)),
                                              ("stack", ("dev",)),
                                              ("faust-bench", ("faust-bench",))])
def test_every_pyproject_pin_is_locked_at_its_version(group: str, locks: tuple[str, ...]) -> None:
    stale = [f"{lock}.txt: {name} {_locked(lock).get(name, 'missing')} (pyproject.toml: {version})"
             for lock in locks for name, version in _pins(group).items()
             if _locked(lock).get(name) != version]
    assert not stale, "the lock is stale, run `make lock`:\n" + "\n".join(stale)


def test_bootstrap_lock_holds_the_installers() -> None:
    assert {"pip", "setuptools", "uv"} <= set(_locked("bootstrap"))


def test_runtime_lock_holds_no_test_or_bench_tools() -> None:
    dev_only = set(_pins("dev")) | set(_pins("stack")) | set(_pins("faust-bench"))
    assert not dev_only & set(_locked("runtime")), \
        "requirements/runtime.txt holds test, stack or bench tools"
    assert {"httpx", "faust-streaming"}.isdisjoint(_pins("")), "pyproject.toml runtime lists a test tool"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_runtime_module_imports_a_test_only_module() -> None:
    tool = _pyproject()["tool"]
    assert isinstance(tool, dict)
    packages = [pattern.rstrip("*") for pattern in tool["setuptools"]["packages"]["find"]["include"]]
    offenders = [f"{path.relative_to(REPO)}: {sorted(_imports(path) & TEST_ONLY_MODULES)}"
                 for package in packages for path in sorted((REPO / package).rglob("*.py"))
                 if _imports(path) & TEST_ONLY_MODULES]
    assert not offenders, "runtime modules import test-only modules:\n" + "\n".join(offenders)
