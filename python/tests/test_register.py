"""Self-registration through the agent endpoints (Consul: /v1/agent/service/register,
/v1/agent/check/pass/:id, /v1/agent/service/deregister/:id; a TTL check goes critical when not
updated in time, DeregisterCriticalServiceAfter removes the service).

These need the agent-endpoint branch merged into the worktree."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import consul_rs
from conftest import run_python

README = Path(__file__).resolve().parents[1] / "README.md"


def _eventually(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_register_keeps_ttl_passing_and_deregisters_on_close(client, prefix):
    name = "reg-" + prefix.strip("/")
    with consul_rs.register(name, port=8080, tags=("v1",), meta={"team": "a"}, check=consul_rs.Check.ttl("1s"),
                            client=client) as reg:
        assert reg.service_id == name and reg.check_ids == [f"service:{name}"]
        assert _eventually(lambda: len(client.health.service(name, passing=True)) == 1)
        time.sleep(2.5)  # over two TTLs: only the keep-alive keeps it passing
        entries = client.health.service(name, passing=True)
        assert len(entries) == 1 and entries[0].service.port == 8080 and entries[0].service.tags == ["v1"]
        assert entries[0].service.meta == {"team": "a"}
    assert reg.closed
    assert _eventually(lambda: client.health.service(name) == [])


def test_agent_service_register_and_ttl_updates(client, prefix):
    name = "areg-" + prefix.strip("/")
    client.agent.service_register(name, id=name + "-1", port=1, check=consul_rs.Check.ttl("30s"))
    check = f"service:{name}-1"

    def status() -> str | None:
        checks = client.health.checks(name)
        return checks[0].status if checks else None

    assert _eventually(lambda: status() == "critical")  # a TTL check starts critical
    client.agent.check_pass(check, note="ok")
    assert _eventually(lambda: status() == "passing")
    assert client.health.checks(name)[0].output == "ok"
    client.agent.check_warn(check)
    assert _eventually(lambda: status() == "warning")
    client.agent.check_fail(check)
    assert _eventually(lambda: status() == "critical")
    client.agent.service_deregister(name + "-1")
    assert _eventually(lambda: client.health.service(name) == [])
    try:
        client.agent.check_pass("no-such-check")
        raise AssertionError("expected NotFoundError")
    except consul_rs.NotFoundError as e:
        assert e.http_status == 404


def test_register_via_embedded_agent_and_atexit_deregisters(embedded_agent, prefix):
    name = "exit-" + prefix.strip("/")
    code = f"""
import consul_rs
consul_rs.register({name!r}, port=9000, check=consul_rs.Check.ttl("10s"),
                   client=consul_rs.Client({embedded_agent.http_addr!r}))
print("registered", flush=True)
"""
    out = run_python(code, timeout=30)
    assert out.returncode == 0, out.stderr
    c = embedded_agent.client()
    assert _eventually(lambda: c.health.service(name) == [])


def test_killed_process_goes_critical_then_deregistered(embedded_agent, prefix):
    name = "kill-" + prefix.strip("/")
    code = f"""
import consul_rs, time
consul_rs.register({name!r}, port=9000,
                   check=consul_rs.Check.ttl("1s", deregister_critical_after="1s"),
                   client=consul_rs.Client({embedded_agent.http_addr!r}))
print("registered", flush=True)
time.sleep(60)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "registered"
        c = embedded_agent.client()
        assert _eventually(lambda: len(c.health.service(name, passing=True)) == 1)
        p.kill()
        p.wait()
        assert _eventually(lambda: c.health.service(name, passing=True) == [], timeout=15)
        # Consul reaps after max(DeregisterCriticalServiceAfter, 1 min), checking every 30 s.
        assert _eventually(lambda: c.health.service(name) == [], timeout=100)
    finally:
        p.kill()
        p.wait()


def test_readme_quickstart_runs(binary_agent):
    # With CONSUL_HTTP_ADDR exported for another agent, as most Consul users have it: the quick
    # start's register() still goes to the Agent embedded in the process, as its comment says
    # (the discovering child reaches that agent through the address it is given).
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    out = run_python(blocks[0], timeout=120, env={"CONSUL_HTTP_ADDR": binary_agent})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "discovered: 127.0.0.1 8080" in out.stdout, out.stdout


def test_register_prefers_the_embedded_agent_over_consul_http_addr(embedded_agent, binary_agent, prefix,
                                                                   monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_ADDR", binary_agent)
    name = prefix.rstrip("/") + "-order"
    with consul_rs.register(name, port=1, check=consul_rs.Check.ttl("10s")) as reg:
        assert reg.service_id in embedded_agent.client().agent.services()
        assert reg.service_id not in consul_rs.Client(binary_agent).agent.services()


def test_register_resolution_order_without_an_embedded_agent(binary_agent):
    # In a fresh interpreter (no Agent of the test process around): CONSUL_HTTP_ADDR, then
    # 127.0.0.1:8500; several embedded Agents and none chosen is refused, naming the way out.
    code = f"""
import os, consul_rs
from consul_rs import _client
os.environ.pop("CONSUL_HTTP_ADDR", None)
assert _client._local_client(None).address == "http://127.0.0.1:8500", _client._local_client(None).address
os.environ["CONSUL_HTTP_ADDR"] = {binary_agent!r}
assert _client._local_client(None).address == "http://{binary_agent}"
with consul_rs.register("order-env", port=2, check=consul_rs.Check.ttl("10s")) as reg:
    assert reg.service_id in consul_rs.Client({binary_agent!r}).agent.services()
with consul_rs.Agent("one") as one:
    assert _client._local_client(None).address == "http://" + one.http_addr
    with consul_rs.Agent("two") as two:
        try:
            consul_rs.register("order-two", port=3)
        except consul_rs.InvalidArgumentError as e:
            assert "agent=" in str(e) and e.code == "INVALID_ARGUMENT", e
        else:
            raise AssertionError("registered with one of two Agents")
        with consul_rs.register("order-two", port=3, agent=two) as reg:
            assert reg.service_id in two.client().agent.services()
print("ok")
"""
    out = run_python(code, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
