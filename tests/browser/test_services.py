"""Services, instances, instance checks and nodes pages: live data from a seeded agent."""

import re

from playwright.sync_api import expect

from conftest import Agent, screenshot, wait_until


def test_services_page_lists_seeded_services_with_health(agent, page):
    page.goto(agent.ui("/ui/dc1/services"))
    web = page.locator('#services tr[data-service="web"]')
    expect(web).to_contain_text("web")
    expect(web).to_contain_text("v1")
    expect(web).to_contain_text("http")
    expect(web.locator("td").nth(2)).to_have_text("1")  # instance count
    expect(web.locator(".count.status-passing")).to_contain_text("2")  # serfHealth + the TTL check
    expect(page.locator('#services tr[data-service="db"]')).to_contain_text("primary")
    expect(page.locator('#services tr[data-service="consul"]')).to_be_visible()
    screenshot(page, "services")


def test_root_redirects_to_local_datacenter_services(agent, page):
    page.goto(agent.ui("/ui/"))
    expect(page).to_have_url(re.compile(r"/ui/dc1/services$"))
    expect(page.locator("h1")).to_have_text("Services")


def test_instances_page_shows_every_check_address_tags_and_meta(agent, page):
    page.goto(agent.ui("/ui/dc1/services/web/instances"))
    inst = page.locator('#instances li[data-instance="web-1"]')
    expect(inst).to_contain_text("127.0.0.1:8080")
    expect(inst).to_contain_text("frontend")
    check = inst.locator('li[data-check="web-ttl"]')
    expect(check).to_contain_text("web heartbeat")
    expect(check).to_contain_text("pushed by the app")
    expect(check).to_contain_text("ttl")
    expect(inst.locator('li[data-check="serfHealth"]')).to_be_visible()


def test_instance_health_checks_page(agent, page):
    page.goto(agent.ui("/ui/dc1/services/web/instances/" + agent.get("/v1/agent/self")["Config"]["NodeName"] + "/web-1/health-checks"))
    expect(page.locator("h1")).to_have_text("web-1")
    expect(page.locator('#service-checks li[data-check="web-ttl"]')).to_have_attribute("data-status", "passing")
    expect(page.locator('#node-checks li[data-check="serfHealth"]')).to_be_visible()
    page.locator('#service-checks li[data-check="web-ttl"] summary').click()
    expect(page.locator('#service-checks li[data-check="web-ttl"] .output')).to_contain_text("all good")
    screenshot(page, "instance-checks")


def test_ttl_check_failed_over_http_turns_red_without_reload(agent, page):
    agent.put("/v1/agent/service/register", {
        "Name": "payments", "ID": "payments-1", "Port": 9000,
        "Check": {"CheckID": "payments-ttl", "Name": "payments heartbeat", "TTL": "10m"},
    })
    agent.put("/v1/agent/check/pass/payments-ttl")
    page.goto(agent.ui("/ui/dc1/services"))
    row = page.locator('#services tr[data-service="payments"]')
    expect(row).to_have_attribute("data-health", "passing")
    page.evaluate("window.__marker = 'same page'")
    agent.put("/v1/agent/check/fail/payments-ttl?note=disk%20full")
    expect(row).to_have_attribute("data-health", "critical", timeout=30000)
    expect(row.locator(".badge.status-critical")).to_be_visible()
    # Red: the critical colour, not just a class.
    color = row.locator(".badge").evaluate("e => getComputedStyle(e).color")
    assert color in ("rgb(179, 38, 30)",), color
    assert page.evaluate("window.__marker") == "same page"
    # The instance page follows too.
    page.locator('#services tr[data-service="payments"] a').click()
    expect(page.locator('#instances li[data-check="payments-ttl"]')).to_have_attribute("data-status", "critical")
    expect(page.locator('#instances li[data-check="payments-ttl"] .output')).to_contain_text("disk full")
    agent.put("/v1/agent/check/pass/payments-ttl")
    expect(page.locator('#instances li[data-check="payments-ttl"]')).to_have_attribute("data-status", "passing", timeout=30000)


def test_service_filter_builds_expression_and_shows_bad_expression_error(agent, page):
    page.goto(agent.ui("/ui/dc1/services"))
    expect(page.locator('#services tr[data-service="db"]')).to_be_visible()
    page.fill("#service-filter", "primary")
    expect(page.locator('#services tr[data-service="web"]')).to_have_count(0)
    expect(page.locator('#services tr[data-service="db"]')).to_be_visible()
    assert "filter=primary" in page.url
    page.check("#service-filter-raw")
    # A raw expression goes to the endpoint as is (/v1/internal/ui/services filters service
    # entries, as Consul's does).
    page.fill("#service-filter", 'Service.Service == "web"')
    expect(page.locator('#services tr[data-service="db"]')).to_have_count(0)
    expect(page.locator('#services tr[data-service="web"]')).to_be_visible()
    page.fill("#service-filter", "Name ==")
    err = page.locator('.error[data-error="400"]')
    expect(err).to_be_visible()
    expect(err).to_contain_text("400")
    expect(err).to_contain_text("filter")
    page.fill("#service-filter", "")
    expect(page.locator('#services tr[data-service="db"]')).to_be_visible()


def test_services_sort_by_health(agent, page):
    agent.put("/v1/agent/service/register", {
        "Name": "aaa-broken", "ID": "aaa-broken-1", "Port": 1,
        "Check": {"CheckID": "aaa-broken-ttl", "TTL": "10m"},
    })
    agent.put("/v1/agent/check/fail/aaa-broken-ttl")
    page.goto(agent.ui("/ui/dc1/services"))
    expect(page.locator('#services tr[data-service="aaa-broken"]')).to_be_visible()
    page.select_option("#service-sort", "name-desc")
    first = page.locator("#services tbody tr").first
    expect(first).not_to_have_attribute("data-service", "aaa-broken")
    page.select_option("#service-sort", "health")
    expect(page.locator("#services tbody tr").first).to_have_attribute("data-health", "critical")


def test_nodes_page_shows_gossip_status_address_and_rtt(agent, page):
    node = agent.get("/v1/agent/self")["Config"]["NodeName"]
    page.goto(agent.ui("/ui/dc1/nodes"))
    row = page.locator(f'#nodes tr[data-node="{node}"]')
    expect(row).to_have_attribute("data-health", "passing")
    expect(row).to_contain_text("127.0.0.1")
    expect(row.locator(".rtt")).to_contain_text("ms")
    expect(row.locator(".member")).to_contain_text("alive")
    screenshot(page, "nodes")
    row.locator("a").first.click()
    expect(page).to_have_url(re.compile(rf"/ui/dc1/nodes/{node}/health-checks$"))
    expect(page.locator('#main li[data-check="serfHealth"]')).to_be_visible()
    # The node's other tabs, each its own URL.
    page.click("#tab-service-instances")
    expect(page.locator("#node-tab")).to_contain_text("web-1")
    page.click("#tab-lock-sessions")
    expect(page.locator("#node-tab")).to_contain_text("leader-election")


def test_check_latency_thresholds_and_measured_latency_are_shown(agent, page):
    agent.put("/v1/agent/service/register", {
        "Name": "timed", "ID": "timed-1", "Port": agent.http,
        "Check": {
            "CheckID": "timed-http", "Name": "timed http", "HTTP": f"{agent.base}/v1/status/leader",
            "Interval": "1s", "Timeout": "5s", "LatencyWarning": "2s", "LatencyCritical": "4s",
        },
    })
    page.goto(agent.ui("/ui/dc1/services/timed/instances"))
    check = page.locator('#instances li[data-check="timed-http"]')
    expect(check.locator(".latency")).to_contain_text("warning ≥ 2s")
    expect(check.locator(".latency")).to_contain_text("critical ≥ 4s")
    expect(check).to_contain_text("http")
    # The measured latency of the last probe, when the agent reports it.
    wait_until(lambda: any(c["CheckID"] == "timed-http" and c["Status"] == "passing"
                           for e in agent.get("/v1/health/service/timed") for c in e["Checks"]), "the probe passes")
    measured = [c.get("Latency") for e in agent.get("/v1/health/service/timed") for c in e["Checks"]
                if c["CheckID"] == "timed-http"][0]
    if measured:
        expect(check.locator(".latency")).not_to_contain_text("—", timeout=30000)
    # Checks without thresholds show no latency row.
    page.goto(agent.ui("/ui/dc1/services/web/instances"))
    expect(page.locator('#instances li[data-check="web-ttl"]')).to_be_visible()
    expect(page.locator('#instances li[data-check="web-ttl"] .latency')).to_have_count(0)


def test_service_dashboard_link_from_dashboard_url_templates(page):
    a = Agent(config='ui_config {\n  enabled = true\n  dashboard_url_templates {\n'
                     '    service = "https://grafana.example/d/svc?var-service={{Service.Name}}&var-dc={{Datacenter}}"\n'
                     '  }\n}\n')
    try:
        a.start()
        a.put("/v1/agent/service/register", {"Name": "billing api", "ID": "b-1", "Port": 7000})
        page.goto(a.ui("/ui/dc1/services/billing%20api/instances"))
        link = page.locator("#service-dashboard")
        expect(link).to_have_attribute(
            "href", "https://grafana.example/d/svc?var-service=billing%20api&var-dc=dc1")
        expect(link).to_have_text("Open dashboard")
    finally:
        a.cleanup()
