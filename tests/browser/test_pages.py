"""Overview, sessions and events pages."""

import os

from playwright.sync_api import expect

from conftest import screenshot, wait_until


def test_overview_shows_leader_peers_autopilot_and_live_charts(agent, page):
    leader = agent.get("/v1/status/leader")
    page.goto(agent.ui("/ui/dc1/overview"))
    expect(page.locator("#raft-leader")).to_have_text(leader)
    expect(page.locator("#raft-peers tbody tr")).to_have_count(1)
    expect(page.locator("#raft-peers tbody tr")).to_contain_text("leader")
    expect(page.locator("#autopilot-healthy")).to_contain_text("healthy")
    expect(page.locator("#failure-tolerance")).to_have_text("0")
    expect(page.locator("#autopilot-servers tbody tr")).to_contain_text("alive")
    # Gossip members, from the agent's blocking form of /v1/agent/members.
    node = agent.get("/v1/agent/self")["Config"]["NodeName"]
    expect(page.locator(f'#gossip-members tr[data-member="{node}"]')).to_contain_text("alive")
    expect(page.locator(f'#gossip-members tr[data-member="{node}"]')).to_contain_text("server")
    # Catalog totals from /v1/internal/ui/catalog-overview.
    expect(page.locator('#catalog-overview .stat[data-kind="Services"] .value')).not_to_have_text("0")
    expect(page.locator('#catalog-overview .stat[data-kind="Nodes"]')).to_be_visible()
    # Charts fill from /v1/agent/metrics while KV writes happen (written on every poll: the
    # agent's metrics interval may roll over between a write and the next sample).
    written = iter(range(10**6))

    def charts_show_writes():
        agent.put(f"/v1/kv/overview/k{next(written)}", "v")
        return (int(page.locator("#chart-kv").get_attribute("data-points")) >= 2
                and page.locator("#chart-kv .value").inner_text() not in ("—", "0.00")
                and page.locator("#chart-commit .value").inner_text() != "—")

    wait_until(charts_show_writes, "the charts show the KV writes", timeout=60)
    expect(page.locator("#chart-kv polyline")).to_have_count(1)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        # A few more samples make a chart worth looking at.
        wait_until(lambda: charts_show_writes() and int(page.locator("#chart-kv").get_attribute("data-points")) >= 6,
                   "more samples", timeout=60)
    screenshot(page, "overview")


def test_sessions_page_shows_session_and_held_lock_and_destroys(agent, page):
    sid = agent.put("/v1/session/create", {"Name": "ui-session", "Behavior": "delete", "LockDelay": "5s"})["ID"]
    agent.put(f"/v1/kv/ui-locks/held?acquire={sid}", "x")
    page.goto(agent.ui("/ui/dc1/sessions"))
    card = page.locator(f'#sessions li[data-session="{sid}"]')
    expect(card).to_contain_text("ui-session")
    expect(card).to_contain_text("delete")
    expect(card).to_contain_text("5s")
    expect(card).to_contain_text("serfHealth")
    expect(card.locator(".locks")).to_contain_text("ui-locks/held")
    seeded = page.locator(f'#sessions li[data-session="{agent.seeded["session"]}"]')
    expect(seeded).to_contain_text("60s")
    expect(seeded.locator(".locks")).to_contain_text("locks/leader")
    card.locator("button", has_text="Destroy").click()
    page.locator("dialog[open] button", has_text="Destroy").click()
    expect(card).to_have_count(0, timeout=30000)
    assert all(s["ID"] != sid for s in agent.get("/v1/session/list"))


def test_sessions_page_follows_locks_as_they_are_taken_and_released(agent, page):
    sid = agent.put("/v1/session/create", {"Name": "live-locks"})["ID"]
    page.goto(agent.ui("/ui/dc1/sessions"))
    locks = page.locator(f'#sessions li[data-session="{sid}"] .locks')
    expect(locks).to_contain_text("none")
    agent.put(f"/v1/kv/live/a?acquire={sid}", "x")
    agent.put(f"/v1/kv/live/b?acquire={sid}", "x")
    expect(locks).to_contain_text("live/a")
    expect(locks).to_contain_text("live/b")
    agent.put(f"/v1/kv/live/a?release={sid}", "x")
    expect(locks).not_to_contain_text("live/a", timeout=30000)
    expect(locks).to_contain_text("live/b")
    agent.request("DELETE", "/v1/kv/live/b")
    expect(locks).to_contain_text("none", timeout=30000)
    agent.put(f"/v1/session/destroy/{sid}")


def test_node_tabs_are_in_the_url_and_follow_history(agent, page):
    node = agent.get("/v1/agent/self")["Config"]["NodeName"]
    base = f"/ui/dc1/nodes/{node}"
    page.goto(agent.ui(f"{base}/lock-sessions"))
    expect(page.locator(f'#node-sessions li[data-session="{agent.seeded["session"]}"]')).to_be_visible()
    expect(page.locator("#tab-lock-sessions")).to_have_attribute("aria-current", "page")
    expect(page.locator('#main li[data-check="serfHealth"]')).to_have_count(0)
    page.click("#tab-metadata")
    expect(page).to_have_url(agent.ui(f"{base}/metadata"))
    expect(page.locator("#node-meta")).to_be_visible()
    expect(page.locator("#tab-metadata")).to_have_attribute("aria-current", "page")
    page.click("#tab-service-instances")
    expect(page).to_have_url(agent.ui(f"{base}/service-instances"))
    expect(page.locator('#node-services li[data-service="web-1"]')).to_be_visible()
    page.go_back()
    expect(page).to_have_url(agent.ui(f"{base}/metadata"))
    expect(page.locator("#node-meta")).to_be_visible()
    page.go_back()
    expect(page).to_have_url(agent.ui(f"{base}/lock-sessions"))
    expect(page.locator("#node-sessions")).to_be_visible()
    page.goto(agent.ui(f"{base}/round-trip-time"))
    expect(page.locator("#rtt-from-agent")).to_have_text("0.000 ms")
    page.goto(agent.ui(f"{base}/health-checks"))
    expect(page.locator('#main li[data-check="serfHealth"]')).to_be_visible()
    # An unknown tab is the checks tab.
    page.goto(agent.ui(f"{base}/no-such-tab"))
    expect(page).to_have_url(agent.ui(f"{base}/health-checks"))


def test_events_page_lists_newest_first_decodes_payload_and_fires(agent, page):
    agent.put("/v1/event/fire/rollout?service=web", "second payload")
    page.goto(agent.ui("/ui/dc1/events"))
    rows = page.locator("#events tbody tr")
    expect(rows.first).to_have_attribute("data-name", "rollout")
    expect(rows.first).to_contain_text("second payload")
    expect(rows.first).to_contain_text("web")
    expect(page.locator('#events tr[data-name="deploy"]').first).to_contain_text("version 42")
    page.fill("#fire-name", "from-ui")
    page.fill("#fire-payload", "hello from the browser")
    page.fill("#fire-tag", "v1")
    page.click("#fire-form button[type=submit]")
    # The agent's 400 is shown as is: a tag filter needs a service filter.
    expect(page.locator('#fire-form .error[data-error="400"]')).to_contain_text("service")
    page.fill("#fire-service", "web")
    page.click("#fire-form button[type=submit]")
    expect(page.locator("#fire-ok")).to_be_visible()
    expect(rows.first).to_have_attribute("data-name", "from-ui", timeout=30000)
    expect(rows.first).to_contain_text("hello from the browser")
    assert any(e["Name"] == "from-ui" and e["TagFilter"] == "v1" and e["ServiceFilter"] == "web" for e in agent.get("/v1/event/list"))
    page.fill("#event-filter", "deploy")
    expect(page.locator('#events tr[data-name="from-ui"]')).to_have_count(0)
    expect(page.locator('#events tr[data-name="deploy"]').first).to_be_visible()
