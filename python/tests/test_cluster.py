"""A 3-server cluster embedded in one Python process (bootstrap_expect=3, retry_join) survives
the loss of its leader (Consul: Raft leader election, KV reads/writes through the new leader)."""

from __future__ import annotations

import time

import consul_rs
from conftest import free_port


def test_three_embedded_servers_survive_leader_loss(tmp_path):
    first_serf = free_port()
    agents = []
    try:
        for i in range(3):
            agents.append(consul_rs.Agent(
                f"py-node{i}", bootstrap_expect=3, data_dir=tmp_path / f"n{i}",
                http_port=free_port(), server_port=free_port(),
                serf_lan_port=first_serf if i == 0 else free_port(),
                retry_join=[] if i == 0 else [f"127.0.0.1:{first_serf}"],
            ))
        for a in agents:
            a.wait_for_leader(30)
        clients = [a.client(timeout=5) for a in agents]
        deadline = time.monotonic() + 30
        while len(clients[0].status.peers()) < 3:
            assert time.monotonic() < deadline, "three voters"
            time.sleep(0.1)
        assert clients[1].kv.put("cluster/k", b"before") is True
        leader_addr = clients[0].status.leader()
        idx = next(i for i, c in enumerate(clients) if c.agent.self()["Stats"]["consul"]["leader"] == "true")
        agents[idx].shutdown()
        rest = [c for i, c in enumerate(clients) if i != idx]
        deadline = time.monotonic() + 30
        while True:
            try:
                new_leader = rest[0].status.leader()
                if new_leader and new_leader != leader_addr and rest[0].kv.put("cluster/k", b"after"):
                    break
            except consul_rs.ConsulError:
                pass
            assert time.monotonic() < deadline, "a new leader within 30 s"
            time.sleep(0.2)
        assert rest[1].kv.get("cluster/k", consistent=True).value == b"after"
    finally:
        for a in agents:
            a.shutdown()

