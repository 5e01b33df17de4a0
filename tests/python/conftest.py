"""Fixtures for wire-compatibility tests: a real `consul-rs agent -dev` on free loopback ports."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _binary() -> str:
    explicit = os.environ.get("CONSUL_RS_BIN")
    if explicit:
        return explicit
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "consul-rs"
        if candidate.exists():
            return str(candidate)
    pytest.fail("consul-rs binary not found: run `cargo build -p consul-rs` first or set CONSUL_RS_BIN")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dev_agent():
    """Starts a dev agent; yields its HTTP port; kills it afterwards."""
    http = _free_port()
    proc = subprocess.Popen(
        [
            _binary(), "agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1",
            f"-http-port={http}", f"-server-port={_free_port()}", f"-serf-lan-port={_free_port()}",
            f"-serf-wan-port={_free_port()}", f"-dns-port={_free_port()}", "-log-level", "warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/status/leader", timeout=2) as r:
                    if r.read().strip() not in (b'""', b""):
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail("dev agent did not come up")
            time.sleep(0.1)
        yield http
    finally:
        proc.kill()
        proc.wait()
