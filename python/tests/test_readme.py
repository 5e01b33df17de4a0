"""The "Client basics" and "Clusters, client agents and events" examples in python/README.md run
as written (the quick start, which needs the agent endpoints, runs in test_register.py)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import run_python

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3, "README has the quick start, client basics and cluster examples"
    return blocks


def test_readme_example_runs():
    out = run_python(_blocks()[1], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_cluster_example_runs():
    out = run_python(_blocks()[2], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "('app1', 'node', 'alive')" in out.stdout and "[b'v2']" in out.stdout
