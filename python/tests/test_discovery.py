"""Client-side discovery over /v1/health/service?passing, updating as checks flip.
Instances are registered with /v1/catalog/register so checks can be flipped directly."""

from __future__ import annotations

import time
from collections import Counter

import pytest

import consul_rs


def _register(client, name, node, status, weight=1):
    client.catalog.register({
        "Node": node, "Address": "10.9.0." + node[-1],
        "Service": {"Service": name, "ID": name, "Port": 80, "Weights": {"Passing": weight, "Warning": 1}},
        "Checks": [{"CheckID": name + "-" + node, "Name": "c", "Status": status, "ServiceID": name}],
    })


def _eventually(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_discovery_follows_check_flips(client, prefix):
    name = "disc-" + prefix.strip("/")
    for i in range(3):
        _register(client, name, f"dn{i}", "passing", weight=1 + i)
    with client.discover(name) as d:
        d.ready(5)
        assert _eventually(lambda: len(d.instances) == 3)
        rr = Counter(d.pick().node.node for _ in range(30))
        assert rr == {"dn0": 10, "dn1": 10, "dn2": 10}
        assert {d.pick("random").node.node for _ in range(100)} == {"dn0", "dn1", "dn2"}
        weighted = Counter(d.pick("weighted").node.node for _ in range(600))
        assert weighted["dn2"] > weighted["dn0"]
        owner = d.pick("consistent_hash", key="user-42").node.node
        assert all(d.pick("consistent_hash", key="user-42").node.node == owner for _ in range(10))
        assert d.pick("nearest") is not None
        # A check goes critical: the instance leaves the set, and the consistent-hash owner of a
        # key on another instance stays put.
        victim = next(n for n in ("dn0", "dn1", "dn2") if n != owner)
        t = time.monotonic()
        _register(client, name, victim, "critical")
        assert _eventually(lambda: victim not in {e.node.node for e in d.instances})
        print(f"discovery updated {1000 * (time.monotonic() - t):.1f} ms after the check flipped")
        assert d.pick("consistent_hash", key="user-42").node.node == owner
        _register(client, name, victim, "passing")
        assert _eventually(lambda: len(d.instances) == 3)
        with pytest.raises(ValueError, match="key"):
            d.pick("consistent_hash")


def test_discovery_of_unknown_service_picks_none(client):
    with client.discover("no-such-service") as d:
        d.ready(5)
        assert d.pick() is None and d.instances == []


async def test_async_discovery(aclient, prefix):
    name = "adisc-" + prefix.strip("/")
    await aclient.catalog.register({"Node": "adn1", "Address": "10.8.0.1", "Service": {"Service": name, "Port": 1}})
    with aclient.discover(name) as d:
        await d.ready(5)
        assert d.pick().service.service == name


def test_least_latency_follows_reports_and_failures_eject(client, prefix):
    """consul-rs's adaptive balancing (issue #21): reported latencies steer ``least_latency``
    picks, and an instance that keeps failing is left out of every strategy's picks."""
    name = "lat-" + prefix.strip("/")
    for i in range(3):
        _register(client, name, f"ln{i}", "passing")
    with client.discover(name) as d:
        d.ready(5)
        assert _eventually(lambda: len(d.instances) == 3)
        latency = {"ln0": 0.002, "ln1": 0.020, "ln2": 0.040}
        for _ in range(300):  # warm-up
            inst = d.pick("least_latency")
            d.report(inst, latency=latency[inst.node.node])
        picks = Counter()
        for _ in range(1000):
            inst = d.pick("least_latency")
            picks[inst.node.node] += 1
            d.report(inst, latency=latency[inst.node.node])
        assert picks["ln0"] >= 800, picks
        # call() times the block and reports it; an exception is a failed call.
        with d.call() as inst:
            assert inst.node.node in latency
        d.configure_balancer(consecutive_failures=3, base_ejection=60.0, max_ejected_share=0.5)
        with pytest.raises(consul_rs.InvalidArgumentError, match="max_ejected_share"):
            d.configure_balancer(max_ejected_share=2.0)
        victim = next(e for e in d.instances if e.node.node == "ln1")
        for _ in range(3):
            d.report(victim, latency=0.001, ok=False)
        assert d.is_ejected(victim)
        assert "ln1" not in {d.pick().node.node for _ in range(30)}
        assert "ln1" not in {d.pick("least_latency").node.node for _ in range(30)}
        # The share cap: a second failing instance stays in (floor(3 × 0.5) = 1 out at most).
        other = next(e for e in d.instances if e.node.node == "ln2")
        for _ in range(3):
            d.report(other, latency=0.001, ok=False)
        assert not d.is_ejected(other)
        with pytest.raises(RuntimeError):
            with d.call("round_robin") as inst:
                raise RuntimeError("the call failed")
        with pytest.raises(consul_rs.InvalidArgumentError, match="latency"):
            d.report(victim, latency=-1)
        with pytest.raises(TypeError, match="ServiceEntry"):
            d.report("ln0", latency=0.1)


def _register_at(client, name, node, status, region, zone):
    client.catalog.register({
        "Node": node, "Address": "10.9.1." + node[-1],
        "Service": {"Service": name, "ID": name, "Port": 80, "Locality": {"Region": region, "Zone": zone}},
        "Checks": [{"CheckID": name + "-" + node, "Name": "c", "Status": status, "ServiceID": name}],
    })


def test_locality_picks_the_zone_then_spills_to_the_region(client, prefix):
    """Issue #20: ``pick("locality")`` prefers the caller's zone, widens to its region when the
    zone has no passing instance (or fewer than ``min_healthy``), then to anywhere."""
    name = "loc-" + prefix.strip("/")
    _register_at(client, name, "zn1", "passing", "eu", "eu-a")
    _register_at(client, name, "rn2", "passing", "eu", "eu-b")
    _register_at(client, name, "rn3", "passing", "eu", "eu-c")
    _register_at(client, name, "on4", "passing", "us", "us-a")
    with client.discover(name) as d:
        d.ready(5)
        assert _eventually(lambda: len(d.instances) == 4)
        assert d.instances[0].service.locality is not None
        d.set_locality_policy(locality=("eu", "eu-a"), region_strategy="consistent_hash")
        assert d.caller_locality == consul_rs.Locality(region="eu", zone="eu-a")
        assert {d.pick("locality").node.node for _ in range(20)} == {"zn1"}
        # The zone's instance turns critical: picks spill over to the region, with the region's
        # strategy (consistent hashing: one owner per key), never across the ocean.
        _register_at(client, name, "zn1", "critical", "eu", "eu-a")
        assert _eventually(lambda: "zn1" not in {e.node.node for e in d.instances})
        owners = {d.pick("locality", key="k1").node.node for _ in range(20)}
        assert len(owners) == 1 and owners <= {"rn2", "rn3"}, owners
        # Back: the zone serves again. With min_healthy=2 one zone instance is not enough, and
        # the region's instances join it.
        _register_at(client, name, "zn1", "passing", "eu", "eu-a")
        assert _eventually(lambda: len(d.instances) == 4)
        assert {d.pick("locality").node.node for _ in range(20)} == {"zn1"}
        d.set_locality_policy(min_healthy=2, region_strategy="round_robin")
        assert Counter(d.pick("locality").node.node for _ in range(30)) == {"zn1": 10, "rn2": 10, "rn3": 10}
        # Bad settings name themselves and change nothing.
        with pytest.raises(consul_rs.InvalidArgumentError, match="min_healthy"):
            d.set_locality_policy(min_healthy=0)
        with pytest.raises(consul_rs.InvalidArgumentError, match="zone"):
            d.set_locality_policy(zone_strategy="locality")
        with pytest.raises(consul_rs.InvalidArgumentError, match="strategy"):
            d.set_locality_policy(other_strategy="closest")
        assert len({d.pick("locality").node.node for _ in range(30)}) == 3
