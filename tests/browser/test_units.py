"""The console's pure functions, run in the browser from the served modules."""

import math


def _module(page, name):
    return f"new URL('{name}', document.querySelector('script[type=module]').src).href"


def test_vivaldi_rtt_matches_consul_formula(agent, page):
    page.goto(agent.ui("/ui/dc1/services"))
    a = {"Vec": [0.001, 0.002, 0, 0, 0, 0, 0, 0.0005], "Height": 0.0001, "Adjustment": 0.0002}
    b = {"Vec": [-0.001, 0.0, 0.003, 0, 0, 0, 0, 0], "Height": 0.0003, "Adjustment": -0.0001}
    dist = math.sqrt(sum((x - y) ** 2 for x, y in zip(a["Vec"], b["Vec"]))) + a["Height"] + b["Height"]
    adjusted = dist + a["Adjustment"] + b["Adjustment"]
    expected = (adjusted if adjusted > 0 else dist) * 1000
    got = page.evaluate(f"async ([a, b]) => (await import({_module(page, 'lib/format.js')})).rttMillis(a, b)", [a, b])
    assert abs(got - expected) < 1e-9
    # A negative adjustment that would make the distance negative is ignored.
    c = dict(b, Adjustment=-1.0)
    raw = (math.sqrt(sum((x - y) ** 2 for x, y in zip(a["Vec"], c["Vec"]))) + a["Height"] + c["Height"]) * 1000
    got = page.evaluate(f"async ([a, b]) => (await import({_module(page, 'lib/format.js')})).rttMillis(a, b)", [a, c])
    assert abs(got - raw) < 1e-9


def test_search_text_becomes_consul_filter_expression(agent, page):
    page.goto(agent.ui("/ui/dc1/services"))
    got = page.evaluate(f"async () => (await import({_module(page, 'pages/services.js')})).searchFilter('we\"b', ['Service.Service', 'Service.Tags'])")
    assert got == 'Service.Service contains "we\\"b" or Service.Tags contains "we\\"b"'


def test_metrics_are_read_for_the_charts(agent, page):
    page.goto(agent.ui("/ui/dc1/services"))
    sample = {"Samples": [
        {"Name": "consul.kvs.apply", "Count": 20, "Sum": 40.0, "Labels": {}},
        {"Name": "consul.raft.commitTime", "Count": 4, "Sum": 8.0, "Labels": {}},
        {"Name": "consul.api.http", "Count": 2, "Sum": 3.0, "Labels": {"path": "v1_kv_"}},
        {"Name": "consul.api.http", "Count": 1, "Sum": 30000.0, "Labels": {"path": "v1_health_service_"}},
    ]}
    got = page.evaluate(f"async (m) => (await import({_module(page, 'pages/overview.js')})).readMetrics(m)", sample)
    assert got == {"kvOps": 2.0, "commitMs": 2.0, "httpMs": 1.5}


def test_dashboard_templates_are_filled_like_consuls(agent, page):
    page.goto(agent.ui("/ui/dc1/services"))
    got = page.evaluate(f"async () => (await import({_module(page, 'pages/services.js')})).dashboardUrl("
                        "'https://g/d?s={{Service.Name}}&ns={{ Service.Namespace }}&dc={{Datacenter}}&x={{Other}}', 'a b/c', 'dc1')")
    assert got == "https://g/d?s=a%20b%2Fc&ns=default&dc=dc1&x={{Other}}"
