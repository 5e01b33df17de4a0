"""Process-level behaviour in subprocesses: Ctrl-C interrupts a blocked watch, forked children
get a working Client and a clear ForkedError from a parent's Agent, and the interpreter exits
promptly with live watches, subscriptions and agents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_python

PRELUDE = "import consul_rs, os, sys, time\n"


def test_ctrl_c_interrupts_blocked_watch_next(binary_agent):
    # Python leaves SIGINT ignored when it starts with it ignored (as a test run launched in the
    # background of a script does): the child asks for Ctrl-C's usual handler itself.
    code = PRELUDE + f"""
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
c = consul_rs.Client({binary_agent!r})
w = c.watch.key("sigint/never")
w.next(timeout=10)
print("blocking", flush=True)
try:
    w.next()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(0)
sys.exit(3)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "blocking"
        time.sleep(0.3)
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 0
        assert time.monotonic() - t < 2.0
        assert p.stdout.read().strip() == "interrupted"
    finally:
        p.kill()
        p.wait()


def test_exit_does_not_hang_with_live_watches_and_agent(binary_agent):
    code = PRELUDE + f"""
c = consul_rs.Client({binary_agent!r})
w = c.watch.kv_prefix("exit/")
w.next(timeout=10)
sub = c.watch.key("exit/k").subscribe(lambda ev: None)
d = c.discover("web")
a = consul_rs.Agent()
a.client().kv.put("x", b"1")
print("ready", flush=True)
"""
    t = time.monotonic()
    out = run_python(code, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ready"
    assert time.monotonic() - t < 20


def test_exit_from_a_thread_blocked_in_next(binary_agent):
    code = PRELUDE + f"""
import threading
c = consul_rs.Client({binary_agent!r})
w = c.watch.key("exit/thread")
w.next(timeout=10)
threading.Thread(target=w.next, daemon=True).start()
time.sleep(0.2)
print("bye", flush=True)
"""
    out = run_python(code, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "bye"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_client_works_and_parent_agent_refuses(binary_agent):
    code = PRELUDE + f"""
c = consul_rs.Client({binary_agent!r})
c.kv.put("fork/k", b"parent")
a = consul_rs.Agent()
ac = a.client()
ac.kv.put("k", b"v")
pid = os.fork()
if pid == 0:
    try:
        assert c.kv.get("fork/k").value == b"parent"
        assert c.kv.put("fork/k", b"child")
        try:
            a.http_addr
            os._exit(4)
        except consul_rs.ForkedError as e:
            assert "fork" in str(e)
        try:
            a.shutdown()
            os._exit(5)
        except consul_rs.ForkedError:
            pass
        os._exit(0)
    except BaseException as e:
        print("child failed:", repr(e), flush=True)
        os._exit(6)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert c.kv.get("fork/k").value == b"child"
assert ac.kv.get("k").value == b"v"  # the parent's agent is unaffected
a.shutdown()
print("ok", flush=True)
"""
    out = run_python(code, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")


def test_asyncio_cancellation_in_subprocess_exits_cleanly(binary_agent):
    code = PRELUDE + f"""
import asyncio
async def main():
    c = consul_rs.AsyncClient({binary_agent!r})
    w = c.watch.key("cancel/never")
    await w.anext(timeout=10)
    t = asyncio.ensure_future(w.anext())
    await asyncio.sleep(0.2)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        print("cancelled", flush=True)
    start = time.monotonic()
    try:
        await asyncio.wait_for(c.kv.get("cancel/k"), 5)
    finally:
        pass
    assert time.monotonic() - start < 5
asyncio.run(main())
"""
    out = run_python(code, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cancelled"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_async_client_works_after_parent_used_async(binary_agent):
    code = PRELUDE + f"""
import asyncio
c = consul_rs.AsyncClient({binary_agent!r})
asyncio.run(c.kv.put("fork/async", b"parent"))
pid = os.fork()
if pid == 0:
    async def child():
        assert (await c.kv.get("fork/async")).value == b"parent"
        await asyncio.wait_for(c.kv.put("fork/async", b"child"), 10)
    try:
        asyncio.run(child())
        os._exit(0)
    except BaseException as e:
        print("child failed:", repr(e), flush=True)
        os._exit(6)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert asyncio.run(c.kv.get("fork/async")).value == b"child"
print("ok", flush=True)
"""
    out = run_python(code, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")
