"""ACLs on (default deny): login with a limited token, persistence across reload, permission
denied, ACL pages, logout."""

import json

from playwright.sync_api import expect

from conftest import MANAGEMENT_TOKEN


def _web_only_token(agent):
    policy = agent.put("/v1/acl/policy", {
        "Name": "web-read-only",
        "Rules": 'service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }',
    })
    token = agent.put("/v1/acl/token", {"Description": "sees only web", "Policies": [{"ID": policy["ID"]}]})
    return token


def test_login_with_token_limited_to_one_service_hides_others_and_persists(acl_agent, page):
    token = _web_only_token(acl_agent)
    page.goto(acl_agent.ui("/ui/dc1/services"))
    # Anonymous under default deny: nothing listed.
    expect(page.locator("#no-services")).to_be_visible()
    page.click("#login")
    dialog = page.locator("#login-dialog")
    expect(dialog).to_be_visible()
    page.fill("#login-token", "00000000-0000-0000-0000-000000000000")
    page.click("#login-submit")
    expect(dialog.locator(".error")).to_be_visible()
    page.fill("#login-token", token["SecretID"])
    page.click("#login-submit")
    expect(dialog).to_have_count(0)
    expect(page.locator('#services tr[data-service="web"]')).to_be_visible()
    expect(page.locator('#services tr[data-service="db"]')).to_have_count(0)
    stored = json.loads(page.evaluate("localStorage.getItem('consul:token')"))
    assert stored == {"AccessorID": token["AccessorID"], "SecretID": token["SecretID"]}
    page.reload()
    expect(page.locator('#services tr[data-service="web"]')).to_be_visible()
    expect(page.locator('#services tr[data-service="db"]')).to_have_count(0)
    expect(page.locator("#logout")).to_be_visible()
    # The limited token may not read ACLs: the page says so instead of breaking.
    page.click("nav#nav >> text=Tokens")
    expect(page.locator('.error[data-error="403"]')).to_contain_text("Permission denied")
    page.click("#logout")
    assert page.evaluate("localStorage.getItem('consul:token')") is None
    expect(page.locator("#login")).to_be_visible()


def test_acl_pages_list_tokens_policies_roles_with_management_token(acl_agent, page):
    token = _web_only_token(acl_agent) if not any(
        p["Name"] == "web-read-only" for p in acl_agent.get("/v1/acl/policies")) else None
    role = acl_agent.put("/v1/acl/role", {"Name": "ops-role", "Description": "operators"})
    page.goto(acl_agent.ui("/ui/dc1/acls/tokens"))
    page.evaluate(
        "t => localStorage.setItem('consul:token', JSON.stringify({AccessorID: null, SecretID: t}))",
        MANAGEMENT_TOKEN)
    page.reload()
    expect(page.locator("#acl-list tbody tr").first).to_be_visible()
    if token:
        expect(page.locator(f'#acl-list tr[data-id="{token["AccessorID"]}"]')).to_contain_text("sees only web")
    page.click("nav#nav >> text=Policies")
    row = page.locator("#acl-list tr", has_text="web-read-only")
    expect(row).to_be_visible()
    row.locator("a").click()
    expect(page.locator("#acl-rules")).to_contain_text('service "web"')
    page.click("nav#nav >> text=Roles")
    expect(page.locator(f'#acl-list tr[data-id="{role["ID"]}"]')).to_contain_text("operators")
