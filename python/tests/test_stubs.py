"""The hand-written `_native.pyi` matches the extension module (mypy.stubtest)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_stubtest():
    pytest.importorskip("mypy")
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "consul_rs._native"], capture_output=True,
                         text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stdout + out.stderr
