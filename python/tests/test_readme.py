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


def test_every_readme_block_is_run() -> None:
    # Python blocks: the quick start (test_register.py) and the two above; shell blocks: the
    # Install section, run as written by test_wheel.py. Nothing else may appear unrun.
    text = README.read_text()
    langs = [lang for lang, _ in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]
    assert langs.count("python") == 3 and set(langs) == {"python", "sh"}, langs
    install = text[text.index("\n## Install\n"):]
    install = install[:install.index("\n## ", 1)]
    assert langs.count("sh") == len(re.findall(r"^```sh\n", install, re.M))
