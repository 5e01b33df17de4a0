"""Two datacenters WAN-joined: the console's datacenter picker lists both and shows the other
datacenter's catalog and KV (the API calls carry ?dc= and the agent forwards them)."""

import re

from playwright.sync_api import expect

from conftest import Agent, wait_until


def test_datacenter_picker_shows_the_other_datacenter(page):
    dc1, dc2 = Agent(), Agent(config='datacenter = "dc2"\n')
    try:
        dc1.start()
        dc2.start()
        dc1.put(f"/v1/agent/join/127.0.0.1:{dc2.ports['serf-wan']}?wan=1")
        wait_until(lambda: sorted(dc1.get("/v1/catalog/datacenters")) == ["dc1", "dc2"], "dc1 knows dc2")
        dc2.put("/v1/agent/service/register", {"Name": "only-in-dc2", "ID": "o-1", "Port": 7000})
        dc2.put("/v1/kv/where", "dc2")
        dc1.put("/v1/kv/where", "dc1")

        page.goto(dc1.ui("/ui/dc1/services"))
        picker = page.locator("#dc-picker")
        expect(picker).to_have_value("dc1")
        picker.focus()  # re-reads the list
        expect(picker.locator("option")).to_have_count(2)
        expect(page.locator('#services tr[data-service="only-in-dc2"]')).to_have_count(0)

        picker.select_option("dc2")
        expect(page).to_have_url(re.compile(r"/ui/dc2/services$"))
        expect(page.locator('#services tr[data-service="only-in-dc2"]')).to_be_visible()

        # A KV value read through dc1's agent from dc2, edited there, lands in dc2 only.
        page.goto(dc1.ui("/ui/dc2/kv/where/edit"))
        editor = page.locator("#kv-value")
        expect(editor).to_have_value("dc2")
        editor.fill("changed in dc2")
        page.locator("#kv-save").click()
        wait_until(lambda: dc2.kv("where") == "changed in dc2", "the edit reaches dc2")
        assert dc1.kv("where") == "dc1"
    finally:
        dc1.cleanup()
        dc2.cleanup()
