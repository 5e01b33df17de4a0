"""Every public Client/AsyncClient call against both a `consul-rs` process and an embedded Agent
(Consul HTTP API: /v1/kv, /v1/txn, /v1/status, /v1/catalog, /v1/health)."""

from __future__ import annotations

import time

import pytest

import consul_rs
from consul_rs import ConsulConnectionError, ConflictError, InvalidArgumentError, KVPair
from conftest import unused_addr


def test_kv_round_trip(client, prefix):
    k = prefix + "a"
    assert client.kv.get(k) is None
    assert client.kv.put(k, b"\x00\xffbin", flags=7) is True
    pair = client.kv.get(k)
    assert isinstance(pair, KVPair)
    assert (pair.key, pair.value, pair.flags) == (k, b"\x00\xffbin", 7)
    assert pair.create_index > 0 and pair.modify_index >= pair.create_index and pair.lock_index == 0
    assert pair.session is None
    assert client.kv.put(prefix + "b", "text") is True
    assert client.kv.get(prefix + "b").value == b"text"
    assert client.kv.get(k, consistent=True).value == b"\x00\xffbin"
    assert client.kv.get(k, stale=True).value == b"\x00\xffbin"
    assert [p.key for p in client.kv.list(prefix)] == [prefix + "a", prefix + "b"]
    assert client.kv.keys(prefix) == [prefix + "a", prefix + "b"]
    assert client.kv.keys(prefix.rstrip("/"), separator="/") == [prefix]
    assert client.kv.put(k, b"", ) is True
    assert client.kv.get(k).value is None  # Consul returns null for an empty value


def test_kv_cas_and_delete(client, prefix):
    k = prefix + "cas"
    assert client.kv.put(k, b"1", cas=0) is True
    assert client.kv.put(k, b"2", cas=0) is False
    idx = client.kv.get(k).modify_index
    assert client.kv.put(k, b"3", cas=idx + 1000) is False
    assert client.kv.put(k, b"3", cas=idx) is True
    assert client.kv.delete(k, cas=idx) is False
    assert client.kv.delete(k, cas=client.kv.get(k).modify_index) is True
    client.kv.put(prefix + "x/1", b"")
    client.kv.put(prefix + "x/2", b"")
    assert client.kv.delete(prefix + "x/", recurse=True) is True
    assert client.kv.list(prefix + "x/") == []
    assert client.kv.delete(prefix + "missing") is True


def test_txn(client, prefix):
    import base64
    out = client.txn([
        {"KV": {"Verb": "set", "Key": prefix + "t", "Value": base64.b64encode(b"v").decode()}},
        {"KV": {"Verb": "get", "Key": prefix + "t"}},
    ])
    assert out["Results"][1]["KV"]["Key"] == prefix + "t"
    with pytest.raises(ConflictError) as e:
        client.txn([{"KV": {"Verb": "check-index", "Key": prefix + "nope", "Index": 5}}])
    assert e.value.code == "CONFLICT" and e.value.http_status == 409


def test_status_catalog_health(client, prefix):
    leader = client.status.leader()
    assert leader and ":" in leader
    assert leader in client.status.peers()
    name = "svc-" + prefix.strip("/")
    client.catalog.register({
        "Node": "node-" + name, "Address": "10.1.2.3",
        "Service": {"Service": name, "ID": name + "-1", "Port": 8080, "Tags": ["v1"]},
        "Checks": [{"CheckID": name + "-chk", "Name": "c", "Status": "passing", "ServiceID": name + "-1"}],
    })
    assert client.catalog.services()[name] == ["v1"]
    assert "node-" + name in [n.node for n in client.catalog.nodes()]
    entries = client.health.service(name, passing=True, tag="v1")
    assert len(entries) == 1
    e = entries[0]
    assert (e.node.node, e.service.id, e.service.port, e.address, e.port) == ("node-" + name, name + "-1", 8080, "10.1.2.3", 8080)
    assert e.checks[0].status == "passing" and e.checks[0].check_id == name + "-chk"
    assert client.health.service(name, tag="nope") == []
    assert [c.check_id for c in client.health.checks(name)] == [name + "-chk"]
    assert any(c.check_id == name + "-chk" for c in client.health.state("passing"))
    assert isinstance(client.agent.self(), dict)


def test_agent_services_and_checks(client, prefix):
    sid = "local-" + prefix.strip("/")
    client.agent.service_register("local", id=sid, port=7000, tags=["a"], check=consul_rs.Check.ttl("30s"))
    try:
        services = client.agent.services()
        assert services[sid].service == "local" and services[sid].port == 7000 and services[sid].tags == ["a"]
        checks = client.agent.checks()
        check = checks["service:" + sid]
        assert (check.service_id, check.status) == (sid, "critical")
    finally:
        client.agent.service_deregister(sid)
    assert sid not in client.agent.services()
    assert "service:" + sid not in client.agent.checks()


def test_bad_arguments(client):
    with pytest.raises(TypeError, match="key"):
        client.kv.get(5)
    with pytest.raises(ValueError, match="key"):
        client.kv.get("")
    with pytest.raises(InvalidArgumentError, match="key") as e:
        client.kv.put("/lead", b"x")
    assert e.value.code == "INVALID_ARGUMENT" and isinstance(e.value, ValueError)
    with pytest.raises(TypeError, match="value"):
        client.kv.put("k", 5)
    with pytest.raises(TypeError, match="cas"):
        client.kv.put("k", b"", cas="1")
    with pytest.raises(ValueError, match="consistent/stale"):
        client.kv.get("k", consistent=True, stale=True)
    with pytest.raises(ValueError, match="state"):
        client.health.state("bogus")
    with pytest.raises(TypeError, match="ops"):
        client.txn("nope")
    with pytest.raises(ValueError, match="port"):
        client.agent.service_register("web", port=70000)
    with pytest.raises(ValueError, match="ttl"):
        consul_rs.Check.ttl("ten seconds")
    with pytest.raises(ValueError, match="timeout"):
        consul_rs.Client("127.0.0.1:1", timeout=0)
    with pytest.raises(InvalidArgumentError, match="address"):
        consul_rs.Client("http://[bad")
    with pytest.raises(ValueError, match="strategy"):
        client.discover("x").pick("sideways")


def test_unreachable_agent_raises_connection_error_after_timeout():
    c = consul_rs.Client(unused_addr(), timeout=2.0)
    t = time.monotonic()
    with pytest.raises(ConsulConnectionError) as e:
        c.kv.get("k")
    assert time.monotonic() - t < 5
    assert isinstance(e.value, ConnectionError) and e.value.code == "CONNECTION"


def test_closed_client_refuses(agent_addr):
    c = consul_rs.Client(agent_addr)
    c.close()
    with pytest.raises(consul_rs.ShutdownError):
        c.kv.get("k")


def test_error_hierarchy():
    assert issubclass(consul_rs.NotFoundError, KeyError)
    assert issubclass(consul_rs.PermissionDeniedError, PermissionError)
    assert issubclass(consul_rs.ConsulTimeoutError, TimeoutError)
    assert issubclass(consul_rs.ConsulConnectionError, ConnectionError)
    assert issubclass(consul_rs.ForkedError, RuntimeError)
    for cls in (consul_rs.ConflictError, consul_rs.NoLeaderError, consul_rs.ShutdownError):
        assert issubclass(cls, consul_rs.ConsulError)


def test_check_builders():
    assert consul_rs.Check.ttl("10s").target == "10.0"
    assert consul_rs.Check.ttl("1m30s")._native()[1] == "90.0"
    h = consul_rs.Check.http("http://127.0.0.1:1/health", interval="5s", timeout=1)
    assert (h.kind, h.interval, h.timeout) == ("http", 5.0, 1.0)
    assert consul_rs.Check.tcp("127.0.0.1:1").kind == "tcp"
    assert consul_rs.Check.grpc("127.0.0.1:1/svc").kind == "grpc"


async def test_async_surface(aclient, prefix):
    k = prefix + "async"
    assert await aclient.kv.get(k) is None
    assert await aclient.kv.put(k, b"1") is True
    assert (await aclient.kv.get(k)).value == b"1"
    assert [p.key for p in await aclient.kv.list(prefix)] == [k]
    assert await aclient.kv.keys(prefix) == [k]
    assert await aclient.kv.put(k, b"2", cas=0) is False
    assert (await aclient.txn([{"KV": {"Verb": "get", "Key": k}}]))["Results"][0]["KV"]["Key"] == k
    assert await aclient.status.leader()
    assert await aclient.status.peers()
    assert isinstance(await aclient.catalog.services(), dict)
    assert isinstance(await aclient.catalog.nodes(), list)
    assert await aclient.health.service("nothing-here") == []
    assert await aclient.kv.delete(k) is True
    with pytest.raises(InvalidArgumentError):
        await aclient.kv.put("/x", b"")
    async with aclient.watch.key(k) as w:
        ev = await w.anext(timeout=5)
        assert ev.value is None
    await aclient.aclose()


async def test_async_unreachable():
    c = consul_rs.AsyncClient(unused_addr(), timeout=1.0)
    with pytest.raises(ConsulConnectionError):
        await c.kv.get("k")


def test_lock_ttl_is_validated_before_any_request(client):
    # Consul's session TTL range is 10s-24h; refused locally, naming the argument.
    with pytest.raises(InvalidArgumentError, match="ttl"):
        client.lock("k", ttl=1).acquire()
    with pytest.raises(ValueError, match="key"):
        client.lock("")


def test_register_targets_the_embedded_agent_by_default(embedded_agent, monkeypatch):
    # consul_rs.register() with no client: this process's embedded agent first.
    from consul_rs import _client
    monkeypatch.delenv("CONSUL_HTTP_ADDR", raising=False)
    assert _client._embedded_agent() is embedded_agent


def test_agent_client_keeps_its_agent_alive():
    c = consul_rs.Agent().client()  # the Agent itself is not referenced by the caller
    import gc
    gc.collect()
    assert c.kv.put("alive", b"1") is True
    # Stopped here rather than whenever the collector gets to the client's reference cycle: a
    # second running Agent would make register() without a client ambiguous for later tests.
    c._agent_ref.shutdown()
