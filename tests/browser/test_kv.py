"""Key/Value browser and editor."""

import re

from playwright.sync_api import expect

from conftest import screenshot


def test_kv_folders_list_and_link_to_keys(agent, page):
    page.goto(agent.ui("/ui/dc1/kv/"))
    expect(page.locator('#kv-list li[data-key="config/"]')).to_be_visible()
    page.locator('#kv-list li[data-key="config/"] a').click()
    expect(page).to_have_url(re.compile(r"/ui/dc1/kv/config/$"))
    expect(page.locator('#kv-list li[data-key="config/app.json"]')).to_be_visible()
    page.locator('#kv-list li[data-key="config/app.json"] a').click()
    expect(page).to_have_url(re.compile(r"/ui/dc1/kv/config/app.json/edit$"))
    expect(page.locator("#kv-value")).to_have_value('{"debug": false}')


def test_kv_value_edited_in_browser_is_read_back_over_http(agent, page):
    agent.put("/v1/kv/edit-me/greeting", "before")
    page.goto(agent.ui("/ui/dc1/kv/edit-me/greeting/edit"))
    expect(page.locator("#kv-value")).to_have_value("before")
    page.fill("#kv-value", "after — edited in the browser")
    page.fill("#kv-flags", "42")
    page.click("#kv-save")
    expect(page.locator("#kv-saved")).to_be_visible()
    assert agent.kv("edit-me/greeting") == "after — edited in the browser"
    assert agent.get("/v1/kv/edit-me/greeting")[0]["Flags"] == 42
    # A second save works too (the editor keeps the new ModifyIndex).
    page.fill("#kv-value", "third")
    page.click("#kv-save")
    expect(page.locator("#kv-saved")).to_be_visible()
    assert agent.kv("edit-me/greeting") == "third"


def test_kv_cas_conflict_is_shown_with_current_value_and_reload(agent, page):
    agent.put("/v1/kv/conflict/key", "original")
    page.goto(agent.ui("/ui/dc1/kv/conflict/key/edit"))
    expect(page.locator("#kv-value")).to_have_value("original")
    agent.put("/v1/kv/conflict/key", "changed over http")
    page.fill("#kv-value", "mine")
    page.click("#kv-save")
    conflict = page.locator("#kv-conflict")
    expect(conflict).to_contain_text("Conflict")
    expect(page.locator("#kv-current")).to_have_text("changed over http")
    assert agent.kv("conflict/key") == "changed over http"
    page.click("#kv-reload")
    expect(page.locator("#kv-value")).to_have_value("changed over http")
    page.fill("#kv-value", "mine after reload")
    page.click("#kv-save")
    expect(page.locator("#kv-saved")).to_be_visible()
    assert agent.kv("conflict/key") == "mine after reload"


def test_kv_json_toggle_validates(agent, page):
    agent.put("/v1/kv/json/doc", '{"a":1}')
    page.goto(agent.ui("/ui/dc1/kv/json/doc/edit"))
    page.check("#kv-json")
    expect(page.locator("#kv-value")).to_have_value('{\n  "a": 1\n}')
    page.fill("#kv-value", '{"a": ')
    expect(page.locator("#kv-json-error")).to_contain_text("Invalid JSON")
    page.click("#kv-save")
    assert agent.kv("json/doc") == '{"a":1}'
    page.fill("#kv-value", '{"a": 2}')
    expect(page.locator("#kv-json-error")).to_be_hidden()
    screenshot(page, "kv-editor")


def test_kv_create_key_and_folder_then_delete_recursively_with_confirmation(agent, page):
    page.goto(agent.ui("/ui/dc1/kv/"))
    page.click("#kv-create")
    page.fill("#kv-key", "made-in-ui/")
    page.click("#kv-create-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/dc1/kv/made-in-ui/$"))
    page.click("#kv-create")
    page.fill("#kv-key", "child.txt")
    page.fill("#kv-value", "v")
    page.click("#kv-create-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/dc1/kv/made-in-ui/child.txt/edit$"))
    assert agent.kv("made-in-ui/child.txt") == "v"
    # Creating an existing key is refused, not overwritten.
    page.goto(agent.ui("/ui/dc1/kv/made-in-ui/create"))
    page.fill("#kv-key", "child.txt")
    page.fill("#kv-value", "other")
    page.click("#kv-create-form button[type=submit]")
    expect(page.locator("#main .error")).to_contain_text("already exists")
    assert agent.kv("made-in-ui/child.txt") == "v"
    # Delete the folder: the dialog asks first; Cancel keeps it.
    page.goto(agent.ui("/ui/dc1/kv/made-in-ui/"))
    page.click("#kv-delete-folder")
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("every key under it")
    dialog.locator("button", has_text="Cancel").click()
    expect(dialog).to_have_count(0)
    assert agent.kv("made-in-ui/child.txt") == "v"
    page.click("#kv-delete-folder")
    page.locator("dialog[open] button", has_text="Delete").click()
    expect(page).to_have_url(re.compile(r"/ui/dc1/kv/$"))
    assert agent.status(agent.base + "/v1/kv/made-in-ui/?recurse") == 404


def test_kv_list_updates_live(agent, page):
    page.goto(agent.ui("/ui/dc1/kv/live/"))
    expect(page.locator("#kv-empty")).to_be_visible()
    agent.put("/v1/kv/live/new-key", "x")
    expect(page.locator('#kv-list li[data-key="live/new-key"]')).to_be_visible(timeout=30000)
