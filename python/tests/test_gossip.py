"""Gossip in one Python process: three embedded servers plus an embedded client agent
(``server=False``, Consul's default kind of node) that joins them through ``retry_join``.

Consul's behaviour checked here: /v1/agent/members lists every node with its Serf role tag
(``consul`` for servers, ``node`` for client agents) and status; a client agent forwards data
requests (KV, catalog, health) to a server; user events fired on one agent reach the others
by gossip and are delivered once by an event watch (which, like ``consul watch -type=event``,
hands over only the events new since the last delivery); payloads over 512 bytes are refused
(413); force-leave of an unknown node is an error; ``?near=`` sorts instances by network
coordinates; a graceful leave shows the node as ``left`` (status 3) and removes it from the
catalog. The module's cluster is shared; the leave test, which ends the client agent, runs last.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import Counter

import pytest

import consul_rs
from conftest import free_port


def _eventually(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return True
        except consul_rs.ConsulError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def _sync_diagnostics(cluster: "Cluster") -> str:
    """What each side holds, for a failed anti-entropy assertion: the client agent's local
    services and members, and each server's (stale) catalog entry for the client's node."""
    out = []
    urls = [f"http://{cluster.client_agent.http_addr}/v1/agent/services",
            f"http://{cluster.client_agent.http_addr}/v1/agent/members"]
    urls += [f"http://{s.http_addr}/v1/catalog/node/gclient?stale" for s in cluster.servers]
    urls += [f"http://{s.http_addr}/v1/status/leader" for s in cluster.servers]
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                out.append(f"{url}: {r.read().decode()}")
        except OSError as e:
            out.append(f"{url}: {e}")
    return "\n".join(out)


class Cluster:
    def __init__(self, servers: list[consul_rs.Agent], client_agent: consul_rs.Agent) -> None:
        self.servers = servers
        self.client_agent = client_agent
        self.server_clients = [s.client(timeout=5) for s in servers]
        self.via_client = client_agent.client(timeout=5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gossip")
    first_serf = free_port()
    servers: list[consul_rs.Agent] = []
    client_agent = None
    try:
        for i in range(3):
            servers.append(consul_rs.Agent(
                f"gsrv{i}", bootstrap_expect=3, data_dir=tmp / f"s{i}", http_port=free_port(),
                server_port=free_port(), serf_lan_port=first_serf if i == 0 else free_port(),
                retry_join=[] if i == 0 else [f"127.0.0.1:{first_serf}"],
            ))
        for s in servers:
            s.wait_for_leader(30)
        # A client agent: joins the servers, waits until a server it reaches knows the leader.
        client_agent = consul_rs.Agent("gclient", server=False, retry_join=[servers[0].serf_addr],
                                       http_port=free_port(), timeout=30)
        c = Cluster(servers, client_agent)
        assert _eventually(lambda: all(
            sum(m.status_name == "alive" for m in sc.agent.members()) == 4 for sc in c.server_clients), 30), \
            "every server sees four alive members"
        yield c
    finally:
        if client_agent is not None:
            client_agent.shutdown()
        for s in servers:
            s.shutdown()


def test_client_agent_arguments_are_checked():
    with pytest.raises(ValueError, match="dev"):
        consul_rs.Agent("bad", server=False, dev=True)
    with pytest.raises(ValueError, match="bootstrap_expect"):
        consul_rs.Agent("bad", server=False, bootstrap_expect=3)
    with pytest.raises(TypeError, match="server"):
        consul_rs.Agent("bad", server="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_join"):
        consul_rs.Agent("bad", server=False, retry_join=[1])  # type: ignore[list-item]
    with pytest.raises(consul_rs.InvalidArgumentError, match="retry_join"):  # a value: the one error model
        consul_rs.Agent("bad", server=False, retry_join=[""])


def test_members_list_servers_and_the_client_agent(cluster):
    members = cluster.via_client.agent.members()
    assert sorted(m.name for m in members) == ["gclient", "gsrv0", "gsrv1", "gsrv2"]
    roles = {m.name: m.role for m in members}
    assert roles == {"gclient": "node", "gsrv0": "consul", "gsrv1": "consul", "gsrv2": "consul"}
    me = next(m for m in members if m.name == "gclient")
    assert (me.status, me.status_name, me.tags["role"]) == (1, "alive", "node")
    assert f"{me.addr}:{me.port}" == cluster.client_agent.serf_addr
    assert not cluster.client_agent.server and cluster.servers[0].server
    # The embedded Agent answers the same through the native layer.
    assert sorted(m.name for m in cluster.servers[1].members()) == ["gclient", "gsrv0", "gsrv1", "gsrv2"]
    # WAN members are the servers (named node.dc); only servers know them.
    wan = cluster.server_clients[0].agent.members(wan=True)
    assert sorted(m.name for m in wan) == ["gsrv0.dc1", "gsrv1.dc1", "gsrv2.dc1"]
    with pytest.raises(TypeError, match="wan"):
        cluster.via_client.agent.members(wan="yes")  # type: ignore[arg-type]


async def test_async_members_and_events(cluster):
    ac = cluster.client_agent.async_client(timeout=5)
    names = sorted(m.name for m in await ac.agent.members())
    assert names == ["gclient", "gsrv0", "gsrv1", "gsrv2"]
    name = "async-" + uuid.uuid4().hex[:8]
    watcher = cluster.servers[2].async_client(timeout=5)
    async with watcher.watch.events(name) as w:
        assert (await w.anext(timeout=5)).value == []
        fired = await ac.event.fire(name, b"hi")
        async for ev in w:
            assert [(e.id, e.payload) for e in ev.value] == [(fired.id, b"hi")]
            break
    assert [e.id for e in await watcher.event.list(name)] == [fired.id]
    await ac.aclose()


def test_join_through_the_api_and_the_agent(cluster):
    # Joining a pool the agent is already in is a no-op that succeeds, as in Consul.
    cluster.via_client.agent.join(cluster.servers[1].serf_addr)
    cluster.client_agent.join(cluster.servers[2].serf_addr)
    with pytest.raises(TypeError, match="address"):
        cluster.via_client.agent.join(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="address"):
        cluster.client_agent.join("")
    with pytest.raises(consul_rs.ConsulError):
        cluster.via_client.agent.join(f"127.0.0.1:{free_port()}")  # nobody there


def test_client_agent_forwards_data_requests(cluster):
    c = cluster.via_client
    assert c.status.leader() == cluster.server_clients[0].status.leader() != ""
    assert c.kv.put("gossip/fwd", b"through the client") is True
    assert cluster.server_clients[1].kv.get("gossip/fwd", consistent=True).value == b"through the client"
    assert c.kv.get("gossip/fwd").value == b"through the client"
    c.catalog.register({"Node": "ext-fwd", "Address": "10.7.0.1", "Service": {"Service": "ext-fwd", "Port": 1}})
    assert "ext-fwd" in cluster.server_clients[2].catalog.services()
    # A service of the client agent itself, synced to the catalog under its node.
    c.agent.service_register("gweb", port=8080, id="gweb-1")
    try:
        # The agent syncs at once; a sync that fails (a server busy or between connections) is
        # retried with backoff of up to 15 s, as Consul's anti-entropy does, so allow for one.
        synced = _eventually(lambda: [e.node.node for e in cluster.server_clients[0].health.service("gweb")]
                             == ["gclient"], timeout=30.0)
        assert synced, "gweb-1 not in the catalog after 30 s:\n" + _sync_diagnostics(cluster)
    finally:
        c.agent.service_deregister("gweb-1")
    assert "gclient" in {n.node for n in cluster.server_clients[0].catalog.nodes()}


def test_event_fired_on_one_agent_is_watched_once_on_another(cluster):
    name = "deploy-" + uuid.uuid4().hex[:8]
    with cluster.server_clients[1].watch.events(name) as w:
        assert w.next(timeout=5).value == []  # nothing of that name yet
        fired = cluster.via_client.event.fire(name, b"v1.2.3")
        assert isinstance(fired, consul_rs.UserEvent) and fired.name == name and fired.payload == b"v1.2.3"
        t = time.monotonic()
        ev = w.next(timeout=5)
        print(f"event reached the watch on another agent in {1000 * (time.monotonic() - t):.0f} ms")
        assert [(e.id, e.name, e.payload) for e in ev.value] == [(fired.id, name, b"v1.2.3")]
        assert ev.value[0].ltime > 0 and ev.value[0].version == 1
        # The next delivery holds only the next event: each one is delivered exactly once.
        second = cluster.servers[0].client().event.fire(name)
        ev = w.next(timeout=5)
        assert [(e.id, e.payload) for e in ev.value] == [(second.id, None)]
        with pytest.raises(consul_rs.ConsulTimeoutError):
            w.next(timeout=0.5)
    assert _eventually(lambda: [e.id for e in cluster.server_clients[2].event.list(name)] == [fired.id, second.id])
    # Callbacks get the same deliveries.
    got: list[consul_rs.UserEvent] = []
    sub = cluster.via_client.watch.events(name).subscribe(lambda ev: got.extend(ev.value))
    try:
        assert _eventually(lambda: [e.id for e in got] == [fired.id, second.id], 5)
    finally:
        sub.stop()


def test_event_filters_and_errors(cluster):
    name = "filtered-" + uuid.uuid4().hex[:8]
    targeted = cluster.via_client.event.fire(name, "only gsrv0", node="^gsrv0$")
    assert targeted.node_filter == "^gsrv0$"
    marker = cluster.via_client.event.fire(name, "everyone")
    assert _eventually(lambda: [e.id for e in cluster.server_clients[0].event.list(name)] == [targeted.id, marker.id])
    assert _eventually(lambda: [e.id for e in cluster.server_clients[1].event.list(name)] == [marker.id])
    assert [e.id for e in cluster.via_client.event.list(name)] == [marker.id]
    assert cluster.via_client.event.list("no-such-event-" + name) == []

    with pytest.raises(consul_rs.TooLargeError) as big:
        cluster.via_client.event.fire(name, b"x" * 513)
    assert big.value.http_status == 413 and big.value.code == "TOO_LARGE"
    assert isinstance(big.value, ValueError)
    # Serf's 512-byte limit covers the whole event (ID, name, filters, payload), as in Consul:
    # a payload that leaves room for the rest is fine, one that does not is refused by name.
    cluster.via_client.event.fire(name, b"x" * 400)
    with pytest.raises(consul_rs.TooLargeError, match="512-byte limit"):
        cluster.via_client.event.fire(name, b"x" * 480)
    with pytest.raises(consul_rs.InvalidArgumentError):
        cluster.via_client.event.fire("_reserved")
    with pytest.raises(TypeError, match="name"):
        cluster.via_client.event.fire(7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        cluster.via_client.event.fire("")
    with pytest.raises(TypeError, match="payload"):
        cluster.via_client.event.fire(name, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tag"):
        cluster.via_client.event.fire(name, tag="v1")
    with pytest.raises(TypeError, match="node"):
        cluster.via_client.event.fire(name, node=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        cluster.via_client.event.list(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        cluster.via_client.watch.events(3)  # type: ignore[arg-type]


def test_force_leave_of_an_unknown_node_is_not_found(cluster):
    with pytest.raises(consul_rs.NotFoundError) as e:
        cluster.server_clients[0].agent.force_leave("no-such-node")
    assert e.value.http_status == 404 and "no-such-node" in str(e.value)
    with pytest.raises(ValueError, match="node"):
        cluster.server_clients[0].agent.force_leave("")
    with pytest.raises(TypeError, match="prune"):
        cluster.server_clients[0].agent.force_leave("x", prune="yes")  # type: ignore[arg-type]


def _put_coordinate(http_addr: str, node: str, x: float) -> None:
    body = json.dumps({"Node": node, "Coord": {"Vec": [x, 0, 0, 0, 0, 0, 0, 0], "Error": 0.2,
                                               "Adjustment": 0, "Height": 1e-5}}).encode()
    req = urllib.request.Request(f"http://{http_addr}/v1/coordinate/update", data=body, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def test_pick_nearest_through_the_client_agent(cluster):
    c = cluster.via_client
    name = "near-" + uuid.uuid4().hex[:8]
    # Node names against their distance, so name order is not RTT order.
    nodes = {"nr-a-" + name: 0.2, "nr-b-" + name: 0.05, "nr-c-" + name: 0.005}
    for node in nodes:
        c.catalog.register({"Node": node, "Address": "10.7.1.1", "Service": {"Service": name, "Port": 80}})
    with c.discover(name) as d:
        d.ready(5)
        assert _eventually(lambda: len(d.instances) == 3)
        # No coordinates for these nodes: Consul leaves the order alone, nearest round-robins.
        assert Counter(d.pick("nearest").node.node for _ in range(30)) == {n: 10 for n in nodes}
    # Coordinates for the instances and for the client agent's node (at the origin); the
    # sort is from the client agent, not from the server that answers the forwarded read.
    assert _eventually(lambda: "gclient" in {n.node for n in c.catalog.nodes()})
    for node, x in [*nodes.items(), ("gclient", 0.0)]:
        _put_coordinate(cluster.servers[0].http_addr, node, x)
    with c.discover(name) as d:
        d.ready(5)
        assert [e.node.node for e in d.instances] == sorted(nodes, key=nodes.get)
        assert {d.pick("nearest").node.node for _ in range(10)} == {"nr-c-" + name}


def test_leave_marks_the_client_agent_left_and_removes_its_node(cluster):
    # Last in this module: the client agent is gone afterwards.
    t = time.monotonic()
    cluster.client_agent.leave()
    assert not cluster.client_agent.running
    s = cluster.server_clients[0]

    def left() -> bool:
        me = [m for m in s.agent.members() if m.name == "gclient"]
        return bool(me) and (me[0].status, me[0].status_name) == (3, "left")

    assert _eventually(left, 10), [(m.name, m.status_name) for m in s.agent.members()]
    print(f"servers saw the leave in {1000 * (time.monotonic() - t):.0f} ms")
    assert _eventually(lambda: "gclient" not in {n.node for n in s.catalog.nodes()}, 15)
    with pytest.raises(consul_rs.ShutdownError):
        cluster.client_agent.members()
    with pytest.raises(consul_rs.ShutdownError):
        cluster.client_agent.leave()
    cluster.client_agent.shutdown()  # still idempotent


def test_event_watch_prunes_to_new_events():
    # The pruning of the agent's event buffer, without a cluster.
    w = consul_rs.Watch.__new__(consul_rs.Watch)
    w._last_event_id = None
    ev = [consul_rs.UserEvent(str(i), "n") for i in range(3)]
    assert w._new_events(ev) == ev
    assert w._new_events(ev + [consul_rs.UserEvent("3", "n")]) == [consul_rs.UserEvent("3", "n")]
    # The last delivered event rotated out of the buffer: everything there is new.
    rotated = [consul_rs.UserEvent(str(i), "n") for i in range(10, 12)]
    assert w._new_events(rotated) == rotated
