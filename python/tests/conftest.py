"""Fixtures: a real `consul-rs agent -dev` process and an embedded `consul_rs.Agent`, both on
free 127.0.0.1 ports; `client`/`aclient` run each test against both."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import consul_rs

REPO = Path(__file__).resolve().parents[2]


def binary() -> str:
    explicit = os.environ.get("CONSUL_RS_BIN")
    if explicit:
        return explicit
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "consul-rs"
        if candidate.exists():
            return str(candidate)
    pytest.fail("consul-rs binary not found: run `cargo build -p consul-rs` first or set CONSUL_RS_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (for signal, fork and exit behaviour)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def binary_agent():
    """A `consul-rs agent -dev` process; yields its HTTP address."""
    http = free_port()
    proc = subprocess.Popen(
        [binary(), "agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1", f"-http-port={http}",
         f"-server-port={free_port()}", f"-serf-lan-port={free_port()}", f"-dns-port={free_port()}",
         "-log-level", "warn"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
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
                pytest.fail("consul-rs dev agent did not come up")
            time.sleep(0.1)
        yield f"127.0.0.1:{http}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def embedded_agent():
    """A consul_rs.Agent embedded in the test process."""
    with consul_rs.Agent("pytest-embedded") as agent:
        yield agent


@pytest.fixture(params=["binary", "embedded"])
def agent_addr(request) -> str:
    """The HTTP address of each kind of agent in turn."""
    if request.param == "binary":
        return request.getfixturevalue("binary_agent")
    return request.getfixturevalue("embedded_agent").http_addr


@pytest.fixture()
def client(agent_addr):
    with consul_rs.Client(agent_addr, timeout=10.0) as c:
        yield c


@pytest.fixture()
def aclient(agent_addr):
    return consul_rs.AsyncClient(agent_addr, timeout=10.0)


@pytest.fixture()
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"t-{uuid.uuid4().hex[:8]}/"


def unused_addr() -> str:
    """An address nothing listens on."""
    return f"127.0.0.1:{free_port()}"
