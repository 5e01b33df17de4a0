"""Wire compatibility: the unmodified py-consul client library from PyPI against consul-rs.

py-consul (criteo/py-consul) is the maintained Python client for Consul's HTTP API; every call
here is the library's own, so a difference in paths, parameters, JSON shapes, headers or status
codes shows up as a failure.
"""

import base64
import threading
import time

import consul
import consul.exceptions
import pytest


@pytest.fixture()
def c(dev_agent):
    return consul.Consul(host="127.0.0.1", port=dev_agent)


def test_kv_put_get_delete(c):
    assert c.kv.put("py/key", "value") is True
    index, data = c.kv.get("py/key")
    assert data["Value"] == b"value"
    assert data["Key"] == "py/key"
    # py-consul hands the X-Consul-Index header back as a string.
    assert int(index) >= data["ModifyIndex"] >= data["CreateIndex"] > 0
    assert c.kv.delete("py/key") is True
    index, data = c.kv.get("py/key")
    assert data is None and int(index) > 0


def test_kv_flags_cas_and_listing(c):
    assert c.kv.put("py/a", "1", flags=7) is True
    _, data = c.kv.get("py/a")
    assert data["Flags"] == 7
    assert c.kv.put("py/a", "2", cas=0) is False
    assert c.kv.put("py/a", "2", cas=data["ModifyIndex"]) is True
    c.kv.put("py/dir/x", "x")
    c.kv.put("py/dir/y", "y")
    _, keys = c.kv.get("py/", keys=True, separator="/")
    assert keys == ["py/a", "py/dir/"]
    _, entries = c.kv.get("py/dir/", recurse=True)
    assert [e["Value"] for e in entries] == [b"x", b"y"]
    assert c.kv.delete("py/", recurse=True) is True
    _, entries = c.kv.get("py/", recurse=True)
    assert entries is None


@pytest.mark.parametrize("consistency", ["default", "consistent", "stale"])
def test_consistency_modes(dev_agent, consistency):
    c = consul.Consul(host="127.0.0.1", port=dev_agent, consistency=consistency)
    c.kv.put("mode", consistency)
    _, data = c.kv.get("mode")
    assert data["Value"] == consistency.encode()


def test_blocking_query_wakes_on_write(c):
    c.kv.put("watch/me", "1")
    index, _ = c.kv.get("watch/me")
    result = {}

    def watcher():
        result["index"], result["data"] = c.kv.get("watch/me", index=index, wait="30s")

    t = threading.Thread(target=watcher)
    t.start()
    time.sleep(0.3)
    c.kv.put("watch/me", "2")
    t.join(timeout=10)
    assert not t.is_alive(), "blocking query was not woken by the write"
    assert int(result["index"]) > int(index)
    assert result["data"]["Value"] == b"2"


def test_txn(c):
    ops = [
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": base64.b64encode(b"1").decode()}},
        {"KV": {"Verb": "get", "Key": "txn/a"}},
    ]
    r = c.txn.put(ops)
    assert len(r["Results"]) == 2
    assert base64.b64decode(r["Results"][1]["KV"]["Value"]) == b"1"
    with pytest.raises(consul.exceptions.ClientError):
        c.txn.put([{"KV": {"Verb": "check-index", "Key": "txn/a", "Index": 1}}])


def test_status_and_agent_self(c):
    leader = c.status.leader()
    assert leader and ":" in leader
    assert c.status.peers() == [leader]
    me = c.agent.self()
    assert me["Config"]["Datacenter"] == "dc1"
    assert me["Config"]["Server"] is True
    assert me["Member"]["Name"] == me["Config"]["NodeName"]


def test_snapshot_save_restore(c):
    c.kv.put("snap/k", "before")
    archive = c.snapshot.save()
    assert archive[:2] == b"\x1f\x8b"  # gzip
    c.kv.put("snap/k", "after")
    assert c.snapshot.restore(archive) is True
    _, data = c.kv.get("snap/k")
    assert data["Value"] == b"before"


def test_bad_requests_raise(c):
    with pytest.raises(consul.exceptions.ConsulException):
        c.kv.get("x", dc="no-such-dc")


def _register_agent_node(c):
    """Sessions need the agent's node in the catalog; register it if the agent has not."""
    node = c.agent.self()["Config"]["NodeName"]
    if c.catalog.node(node)[1] is None:
        assert c.catalog.register(node, "127.0.0.1") is True
    return node


def test_session_create_info_list_destroy(c):
    node = _register_agent_node(c)
    sid = c.session.create(name="py-session", ttl=30, lock_delay=5, behavior="delete")
    _, info = c.session.info(sid)
    assert info["ID"] == sid and info["Name"] == "py-session" and info["Node"] == node
    assert info["TTL"] == "30s" and info["Behavior"] == "delete" and info["LockDelay"] == 5_000_000_000
    _, sessions = c.session.list()
    assert [s["ID"] for s in sessions] == [sid]
    _, on_node = c.session.node(node)
    assert [s["ID"] for s in on_node] == [sid]
    assert c.session.renew(sid)["ID"] == sid
    assert c.session.destroy(sid) is True
    _, info = c.session.info(sid)
    assert info is None
    with pytest.raises(consul.exceptions.NotFound):
        c.session.renew(sid)


def test_kv_acquire_release(c):
    _register_agent_node(c)
    s1 = c.session.create(lock_delay=0)
    s2 = c.session.create(lock_delay=0)
    assert c.kv.put("py/lock", "one", acquire=s1) is True
    assert c.kv.put("py/lock", "two", acquire=s2) is False
    _, data = c.kv.get("py/lock")
    assert data["Session"] == s1 and data["LockIndex"] == 1 and data["Value"] == b"one"
    assert c.kv.put("py/lock", "x", release=s2) is False
    assert c.kv.put("py/lock", "x", release=s1) is True
    _, data = c.kv.get("py/lock")
    assert "Session" not in data and data["LockIndex"] == 1
    assert c.session.destroy(s1) is True
    assert c.kv.put("py/lock", "two", acquire=s2) is True
    assert c.session.destroy(s2) is True
    _, data = c.kv.get("py/lock")
    assert "Session" not in data


def test_coordinates_and_near(c):
    for node in ("py-near", "py-far"):
        assert c.catalog.register(node, "10.0.0.1") is True
    near = {"Vec": [0.001, 0, 0, 0, 0, 0, 0, 0], "Error": 0.2, "Adjustment": 0.0, "Height": 1e-05}
    far = dict(near, Vec=[0.050, 0, 0, 0, 0, 0, 0, 0])
    assert c.coordinate.update("py-far", far) is True
    assert c.coordinate.update("py-near", near) is True
    index, entries = c.coordinate.nodes()
    assert index and [e["Node"] for e in entries if e["Node"].startswith("py-")] == ["py-far", "py-near"]
    _, one = c.coordinate.node("py-near")
    assert one[0]["Segment"] == "" and one[0]["Coord"]["Vec"][0] == 0.001
    _, missing = c.coordinate.node("py-nowhere")
    assert missing is None
    dcs = c.coordinate.datacenters()
    assert dcs[0]["Datacenter"] == "dc1" and dcs[0]["AreaID"] == "wan"
    _, nodes = c.catalog.nodes(near="py-near")
    assert [n["Node"] for n in nodes][:2] == ["py-near", "py-far"]
    with pytest.raises(consul.exceptions.ConsulException):
        c.coordinate.update("py-near", dict(near, Vec=[0, 0]))
