"""Wire compatibility of the agent's services and checks with the unmodified py-consul client:
register/deregister, checks and TTL updates, maintenance, local health, and the health endpoint
seeing what anti-entropy synced."""

import time

import consul
import consul.exceptions
import pytest


@pytest.fixture()
def c(dev_agent):
    return consul.Consul(host="127.0.0.1", port=dev_agent)


def wait(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_service_register_with_ttl_check_and_health(c):
    check = consul.Check.ttl("30s")
    assert c.agent.service.register("web", service_id="web1", port=8080, tags=["v1"], check=check) is True
    services = c.agent.services()
    assert services["web1"]["Service"] == "web"
    assert services["web1"]["Port"] == 8080
    assert c.agent.checks()["service:web1"]["Status"] == "critical"

    assert c.agent.check.ttl_pass("service:web1", notes="fine") is True
    nodes = wait(lambda: c.health.service("web", passing=True)[1], "web passing")
    assert nodes[0]["Service"]["ID"] == "web1"
    # The node's serfHealth check comes first (checks sort by CheckID, as in Consul).
    checks = {ch["CheckID"]: ch for ch in nodes[0]["Checks"]}
    assert checks["serfHealth"]["Status"] == "passing"
    assert checks["service:web1"]["Output"] == "fine"

    assert c.agent.check.ttl_warn("service:web1") is True
    assert c.agent.checks()["service:web1"]["Status"] == "warning"
    assert c.agent.check.ttl_fail("service:web1") is True
    wait(lambda: c.health.service("web", passing=True)[1] == [], "web not passing")

    assert c.agent.service.deregister("web1") is True
    assert c.agent.services() == {}
    wait(lambda: c.catalog.service("web")[1] == [], "web gone from the catalog")


def test_check_register_deregister_and_script_refusal(c):
    assert c.agent.check.register("disk", check=consul.Check.ttl("1m")) is True
    assert "disk" in c.agent.checks()
    assert c.agent.check.deregister("disk") is True
    assert "disk" not in c.agent.checks()
    # Script checks need enable_script_checks.
    with pytest.raises(consul.exceptions.ConsulException):
        c.agent.check.register("script", check=consul.Check.script(["/bin/true"], "10s"))


def test_http_and_tcp_check_definitions(c):
    http = consul.Check.http("http://127.0.0.1:1/health", "10s", timeout="1s", header={"X-A": ["b"]})
    assert c.agent.service.register("api", service_id="api1", check=http) is True
    chk = c.agent.checks()["service:api1"]
    assert chk["Type"] == "http"
    assert chk["Definition"]["HTTP"] == "http://127.0.0.1:1/health"
    assert c.agent.check.register("tcp", check=consul.Check.tcp("127.0.0.1", 1, "10s")) is True
    assert c.agent.checks()["tcp"]["Type"] == "tcp"


def test_maintenance_modes(c):
    assert c.agent.service.register("db", service_id="db1", check=consul.Check.ttl("1m")) is True
    assert c.agent.service.maintenance("db1", "true", reason="upgrade") is True
    assert c.agent.checks()["_service_maintenance:db1"]["Notes"] == "upgrade"
    assert c.agent.service.maintenance("db1", "false") is True
    assert "_service_maintenance:db1" not in c.agent.checks()
    assert c.agent.maintenance("true", reason="kernel") is True
    assert c.agent.checks()["_node_maintenance"]["Status"] == "critical"
    assert c.agent.maintenance("false") is True
    assert "_node_maintenance" not in c.agent.checks()


def test_reload(c):
    assert c.agent.reload() is True
