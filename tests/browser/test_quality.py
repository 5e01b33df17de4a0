"""Shell quality: bookmarks, not-found, unreachable banner, keyboard, phone width, dark theme and
the first page's transfer size."""

import re

import pytest
from playwright.sync_api import expect

from conftest import screenshot


def _node(agent):
    return agent.get("/v1/agent/self")["Config"]["NodeName"]


@pytest.mark.parametrize("path,expected", [
    ("/ui/dc1/services", "#services"),
    ("/ui/dc1/services/web/instances", '#instances li[data-instance="web-1"]'),
    ("/ui/dc1/services/web/instances/{node}/web-1/health-checks", '#service-checks li[data-check="web-ttl"]'),
    ("/ui/dc1/nodes", "#nodes"),
    ("/ui/dc1/nodes/{node}", '#main li[data-check="serfHealth"]'),
    ("/ui/dc1/nodes/{node}/health-checks", '#main li[data-check="serfHealth"]'),
    ("/ui/dc1/kv/config/", '#kv-list li[data-key="config/name"]'),
    ("/ui/dc1/kv/config/app.json/edit", "#kv-value"),
    ("/ui/dc1/kv/create", "#kv-create-form"),
    ("/ui/dc1/overview", "#raft-peers"),
    ("/ui/dc1/sessions", "#sessions"),
    ("/ui/dc1/events", "#events"),
    ("/ui/dc1/acls/tokens", "#acls-disabled"),
])
def test_bookmarks_load_directly(agent, page, path, expected):
    page.goto(agent.ui(path.format(node=_node(agent))))
    expect(page.locator(expected).first).to_be_visible()


def test_unknown_route_shows_not_found(agent, page):
    page.goto(agent.ui("/ui/dc1/no-such-page"))
    expect(page.locator("h1")).to_have_text("Page not found")
    page.click("text=Go to services")
    expect(page).to_have_url(re.compile(r"/ui/dc1/services$"))


def test_unreachable_banner_appears_and_clears_after_restart(own_agent, page):
    page.goto(own_agent.ui("/ui/dc1/services"))
    expect(page.locator('#services tr[data-service="web"]')).to_be_visible()
    banner = page.locator("#banner")
    expect(banner).to_be_hidden()
    own_agent.stop()
    expect(banner).to_be_visible(timeout=30000)
    expect(banner).to_contain_text("unreachable")
    own_agent.start()
    expect(banner).to_be_hidden(timeout=30000)
    # Lists resume without a reload.
    own_agent.put("/v1/agent/service/register", {"Name": "after-restart", "Port": 1})
    expect(page.locator('#services tr[data-service="after-restart"]')).to_be_visible(timeout=30000)


def test_keyboard_alone_skip_link_nav_and_dialog(agent, page):
    page.goto(agent.ui("/ui/dc1/services"))
    expect(page.locator("#services")).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Tab from the top to the Nodes link and follow it with Enter.
    page.evaluate("document.querySelector('.brand').focus()")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Nodes":
            break
    assert page.evaluate("document.activeElement.textContent") == "Nodes"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/dc1/nodes$"))
    # A dialog keeps focus inside and closes with Escape.
    page.goto(agent.ui("/ui/dc1/kv/config/"))
    expect(page.locator("#kv-list")).to_be_visible()
    page.focus("#kv-delete-folder")
    page.keyboard.press("Enter")
    expect(page.locator("dialog[open]")).to_be_visible()
    for _ in range(5):
        page.keyboard.press("Tab")
        assert page.evaluate("!!document.activeElement.closest('dialog')")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("!!document.activeElement.closest('dialog')")
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
    assert agent.kv("config/name") == "hello world"


def test_phone_width_collapses_nav_into_menu(agent, console):
    page = console(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).page
    page.goto(agent.ui("/ui/dc1/services"))
    expect(page.locator("#services")).to_be_visible()
    expect(page.locator("nav#nav")).to_be_hidden()
    toggle = page.locator("#menu-toggle")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.locator("nav#nav >> text=Key/Value").click()
    expect(page).to_have_url(re.compile(r"/ui/dc1/kv/?$"))
    expect(page.locator("nav#nav")).to_be_hidden()
    for path in ("/ui/dc1/services", "/ui/dc1/services/web/instances", "/ui/dc1/nodes"):
        page.goto(agent.ui(path))
        page.wait_for_selector("main .region[aria-busy=false]")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path


def test_dark_theme_follows_preference_and_toggle_is_remembered(agent, console):
    page = console(color_scheme="dark").page
    page.goto(agent.ui("/ui/dc1/services"))
    expect(page.locator("#services")).to_be_visible()
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(21, 23, 28)", bg
    screenshot(page, "services-dark")
    page.click("#theme-toggle")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    page.reload()
    expect(page.locator("#services")).to_be_visible()
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    page.click("#theme-toggle")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 23, 28)"


def test_first_page_transfer_is_under_300_kb(agent, page):
    responses = []
    page.on("response", lambda r: responses.append(r))
    page.goto(agent.ui("/ui/dc1/services"))
    expect(page.locator("#services")).to_be_visible()
    page.wait_for_selector("main .region[aria-busy=false]")
    total = 0
    kinds = set()
    for r in responses:
        if "/v1/" in r.url:
            continue
        sizes = r.request.sizes()
        total += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        kinds.add(r.request.resource_type)
        # Text worth compressing arrives compressed (the agent skips tiny files where it saves little).
        if r.request.resource_type in ("script", "stylesheet") and r.status == 200 and len(r.body()) > 4096:
            assert r.headers.get("content-encoding") in ("br", "gzip"), (r.url, r.headers)
    assert {"document", "script", "stylesheet"} <= kinds, kinds
    assert total < 300 * 1024, f"first page transfers {total} bytes"
