"""Shared fixtures: where ../shared is, and small helpers to run the meter."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("PYHUNT_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> pathlib.Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the team's ../shared directory, or set PYHUNT_SHARED); absent here")
    return p


def run_cli(*args: str, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m pyhunt ARGS` and capture its output."""
    return subprocess.run([sys.executable, "-m", "pyhunt", *args], input=input, capture_output=True,
                          timeout=timeout, cwd=ROOT)


def flows_of(path, *extra: str) -> list[dict]:
    """zeek-json flows of a capture, through the CLI."""
    r = run_cli("replay", "-q", "--format", "zeek-json", "-o", "-", *extra, str(path))
    assert r.returncode == 0, r.stderr.decode()
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


# One Elasticsearch node for the whole session, shared by every module (tests/es_fixture.py). Test
# modules import the function-scoped fixtures (``es``...) but not ``es_node``: a module that imported
# it would get a node of its own.
from es_fixture import es_node  # noqa: E402,F401
