"""Locks and leader election on sessions (Consul: /v1/session/create with TTL and
Behavior=release, PUT /v1/kv/:key?acquire= / ?release=, session renew).

Sessions are on main; in Consul the agent's own node is always in the catalog (anti-entropy,
arriving with the agent-endpoints branch), so until then the fixture below registers it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

import consul_rs



@pytest.fixture(autouse=True)
def agent_nodes_in_catalog(binary_agent, embedded_agent):
    """Sessions need their node in the catalog; registering it again is a no-op for Consul."""
    for addr in (binary_agent, embedded_agent.http_addr):
        c = consul_rs.Client(addr)
        node = c.agent.self()["Config"]["NodeName"]
        if node not in [n.node for n in c.catalog.nodes()]:
            c.catalog.register({"Node": node, "Address": "127.0.0.1"})


def test_lock_context_manager_sets_and_releases_session(client, prefix):
    k = prefix + "lock"
    with client.lock(k, value=b"me") as lock:
        assert lock.held and lock.session
        pair = client.kv.get(k)
        assert pair.session == lock.session and pair.value == b"me" and pair.lock_index == 1
    assert not lock.held
    assert client.kv.get(k).session is None


def test_lock_excludes_a_second_holder_until_release(client, prefix):
    k = prefix + "excl"
    first = client.lock(k)
    assert first.acquire()
    second = client.lock(k, lock_delay=0)
    assert second.acquire(timeout=1.0) is False
    threading.Timer(0.5, first.release).start()
    t = time.monotonic()
    assert second.acquire(timeout=10.0) is True
    assert time.monotonic() - t < 5
    second.release()


def test_lock_exclusive_across_two_processes(binary_agent, prefix):
    k = prefix + "proc"
    code = f"""
import consul_rs, sys, time
c = consul_rs.Client({binary_agent!r})
with c.lock({k!r}, lock_delay=0):
    print("in", time.time(), flush=True)
    time.sleep(1.0)
    print("out", time.time(), flush=True)
"""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    spans = sorted((float(o[1]), float(o[3])) for o in outs)
    assert spans[0][1] <= spans[1][0], f"critical sections overlap: {spans}"


def test_leader_election_hands_over(client, prefix):
    k = prefix + "leader"
    a = client.leader_election(k, value=b"a")
    assert a.wait_for_leadership(10)
    b = client.leader_election(k, value=b"b")
    assert not b.wait_for_leadership(1.0)
    a.resign()
    assert b.wait_for_leadership(20)
    assert client.kv.get(k).value == b"b"
    b.resign()


async def test_async_lock(aclient, prefix):
    async with aclient.lock(prefix + "alock") as lock:
        assert lock.held
    assert not lock.held


def test_sessions_api(client):
    sid = client.session.create(name="s", ttl="15s")
    client.session.renew(sid)
    client.session.destroy(sid)
    with pytest.raises(consul_rs.NotFoundError):
        client.session.renew(sid)

