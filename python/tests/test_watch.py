"""Watches over blocking queries (Consul's blocking-query semantics: X-Consul-Index, wait)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import consul_rs


def test_key_watch_wakes_quickly_after_put(client, prefix):
    k = prefix + "w"
    with client.watch.key(k) as w:
        first = w.next(timeout=5)
        assert first.value is None
        time.sleep(0.3)  # let the watch settle into its blocking query
        t = time.monotonic()
        client.kv.put(k, b"v1")
        ev = w.next(timeout=5)
        woke = time.monotonic() - t
        assert ev.value.value == b"v1" and ev.index >= first.index
        # Issue #6 targets < 100 ms; asserted with a margin for loaded CI machines.
        assert woke < 2.0, woke
        print(f"watch woke {woke * 1000:.1f} ms after put")


def test_prefix_watch_iterator_and_close(client, prefix):
    w = client.watch.kv_prefix(prefix)
    assert next(w).value == []
    client.kv.put(prefix + "a", b"1")
    assert [p.key for p in next(w).value] == [prefix + "a"]
    closer = threading.Timer(0.3, w.close)
    closer.start()
    assert list(w) == []  # close wakes the pending next and ends iteration
    assert w.closed and w.next() is None


def test_next_timeout(client, prefix):
    with client.watch.key(prefix + "quiet") as w:
        w.next(timeout=5)
        with pytest.raises(consul_rs.ConsulTimeoutError):
            w.next(timeout=0.2)


def test_service_and_checks_and_catalog_watches(client, prefix):
    name = "wsvc-" + prefix.strip("/")
    with client.watch.service(name) as ws, client.watch.checks(name) as wc, \
            client.watch.services() as wss, client.watch.nodes() as wn:
        assert ws.next(timeout=5).value == []
        assert wc.next(timeout=5).value == []
        assert isinstance(wss.next(timeout=5).value, dict)
        assert isinstance(wn.next(timeout=5).value, list)
        client.catalog.register({"Node": "n-" + name, "Address": "10.0.0.9",
                                 "Service": {"Service": name, "Port": 1},
                                 "Checks": [{"CheckID": name, "Name": "c", "Status": "passing", "ServiceID": name}]})
        entries = ws.next(timeout=5).value
        assert [e.service.service for e in entries] == [name]
        assert [c.status for c in wc.next(timeout=5).value] == ["passing"]
        assert name in wss.next(timeout=5).value
        assert "n-" + name in [n.node for n in wn.next(timeout=5).value]


def test_subscribe_callback(client, prefix):
    k = prefix + "cb"
    got: list[consul_rs.WatchEvent] = []
    seen = threading.Event()

    def cb(ev):
        got.append(ev)
        if ev.value is not None and ev.value.value == b"x":
            seen.set()

    sub = client.watch.key(k).subscribe(cb)
    client.kv.put(k, b"x")
    assert seen.wait(5)
    sub.stop()
    assert got[-1].value.value == b"x"


async def test_async_iteration(aclient, prefix):
    k = prefix + "aw"
    async with aclient.watch.key(k) as w:
        it = w.__aiter__()
        assert (await it.__anext__()).value is None
        await aclient.kv.put(k, b"a")
        assert (await asyncio.wait_for(it.__anext__(), 5)).value.value == b"a"


async def test_async_cancellation_cancels_the_wait(aclient, prefix):
    w = aclient.watch.key(prefix + "never")
    await w.anext(timeout=5)
    task = asyncio.ensure_future(w.anext())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The watch is still usable after a cancelled wait.
    await aclient.kv.put(prefix + "never", b"now")
    assert (await w.anext(timeout=5)).value.value == b"now"
    w.close()
