"""The "Client basics" example in python/README.md runs as written (the quick start, which
needs the agent endpoints, runs in test_register.py)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import run_python

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has a python example"
    assert len(blocks) >= 2, "README has the quick start and the client basics examples"
    out = run_python(blocks[1], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
