"""Metrics providers on a service's page: the built-in `prometheus` provider reading a stand-in
Prometheus through the agent's metrics proxy, a provider error shown, a custom provider loaded
from `ui_config.metrics_provider_files`, and nothing at all without a provider."""

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from conftest import Agent, screenshot


class StandInPrometheus:
    """A stand-in for Prometheus' HTTP API: answers /api/v1/query and /api/v1/query_range with
    figures chosen here (by what the query asks for), records every query, and can be told to fail."""

    def __init__(self):
        self.queries = []
        self.fail = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urllib.parse.urlparse(self.path)
                params = urllib.parse.parse_qs(url.query)
                query = params.get("query", [""])[0]
                outer.queries.append((url.path, query, self.headers.get("X-Consul-Token")))
                if outer.fail:
                    self._send(503, {"status": "error", "errorType": "unavailable", "error": outer.fail})
                elif url.path == "/api/v1/query":
                    self._send(200, {"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [time.time(), outer.instant(query)]}]}})
                elif url.path == "/api/v1/query_range":
                    start, end = float(params["start"][0]), float(params["end"][0])
                    base = 0.5 if 'code_class="5"' in query else 9.5
                    # Some shape for the chart; the last point is the round figure the test reads.
                    shape = [0.6, 0.8, 0.7, 1.0, 0.9, 0.5, 0.8, 1.1, 0.9, 1.0]
                    points = [[start + i * (end - start) / 9, str(base * f)] for i, f in enumerate(shape)]
                    self._send(200, {"status": "success", "data": {"resultType": "matrix", "result": [
                        {"metric": {}, "values": points}]}})
                else:
                    self._send(404, {"status": "error", "error": "no such path"})

            def _send(self, status, body):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def instant(query: str) -> str:
        if "histogram_quantile(0.99" in query:
            return "120"
        if "histogram_quantile(0.5" in query:
            return "8"
        if "_completed" in query:
            return "12.5"
        if 'code_class="5"' in query:
            return "2"
        if query.startswith("custom_metric"):
            return "42"
        return "0"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def prometheus():
    p = StandInPrometheus()
    try:
        yield p
    finally:
        p.close()


def _agent(config: str) -> Agent:
    a = Agent(config=config)
    a.start()
    a.put("/v1/agent/service/register", {"Name": "shop", "ID": "shop-1", "Port": 8080, "Meta": {"protocol": "http"}})
    a.put("/v1/agent/service/register", {"Name": "cache", "ID": "cache-1", "Port": 6379})
    return a


def test_builtin_prometheus_provider_shows_the_service_traffic_and_its_errors(prometheus, console):
    agent = _agent(f"""
ui_config {{
  enabled = true
  metrics_provider = "prometheus"
  metrics_proxy {{ base_url = "{prometheus.url}" }}
}}
""")
    try:
        page = console().page
        page.goto(agent.ui("/ui/dc1/services/shop/instances"))
        panel = page.locator("#service-metrics")
        expect(panel).to_have_attribute("data-provider", "prometheus")
        expect(page.locator("#metrics-protocol")).to_contain_text("Protocol http")
        stats = page.locator("#metrics-stats")
        expect(stats.locator('[data-stat="RPS"] .value')).to_have_text("12.5")
        expect(stats.locator('[data-stat="ER"] .value')).to_have_text("2%")
        expect(stats.locator('[data-stat="P50"] .value')).to_have_text("8ms")
        expect(stats.locator('[data-stat="P99"] .value')).to_have_text("120ms")
        expect(page.locator("#metrics-series")).to_have_attribute("data-points", "10")
        expect(page.locator("#metrics-series-total")).to_have_text("10 rps")
        expect(page.locator('#metrics-series [data-series="Successes"]')).to_contain_text("9.5 rps")
        expect(page.locator('#metrics-series [data-series="Errors"]')).to_contain_text("0.5 rps")
        screenshot(page, "service-metrics")
        # Every query went through the proxy, for this service, without the console's token.
        assert prometheus.queries, "the stand-in was asked nothing"
        assert all(p in ("/api/v1/query", "/api/v1/query_range") for p, _, _ in prometheus.queries)
        assert all('local_cluster="shop"' in q for _, q, _ in prometheus.queries)
        assert all(tok is None for _, _, tok in prometheus.queries)

        # A plain service (no protocol meta, topology says tcp) gets connection figures.
        page.goto(agent.ui("/ui/dc1/services/cache/instances"))
        expect(page.locator("#metrics-protocol")).to_contain_text("Protocol tcp")
        expect(page.locator('#metrics-stats [data-stat="CR"]')).to_be_visible()
        expect(page.locator("#metrics-series-total")).to_contain_text("bps")

        # The backend failing shows the provider's error; its recovery clears it.
        prometheus.fail = "stand-in Prometheus is down"
        error = page.locator("#metrics-error")
        expect(error).to_contain_text("Metrics unavailable", timeout=30000)
        expect(error).to_contain_text("stand-in Prometheus is down")
        prometheus.fail = None
        expect(error).to_have_count(0, timeout=30000)
        expect(page.locator('#metrics-stats [data-stat="CR"]')).to_be_visible()
    finally:
        agent.cleanup()


CUSTOM_PROVIDER = """
(function () {
  var custom = {
    init: function (options) { this.options = options; },
    serviceRecentSummarySeries: function (dc, ns, service, protocol) {
      var now = Date.now();
      return Promise.resolve({ unitSuffix: ' qps', labels: { Total: 'All', Queries: 'Queries per second' },
        data: [{ time: now - 60000, Queries: 1 }, { time: now, Queries: 3 }] });
    },
    serviceRecentSummaryStats: function (dc, ns, service, protocol) {
      var opts = this.options;
      return opts.httpGet('/api/v1/query', { query: 'custom_metric{service="' + service + '"}' }).then(function (r) {
        return { stats: [
          { label: 'QPS', desc: '<b>' + service + '</b> queries', value: r.data.result[0].value[1] },
          { label: 'OPT', desc: 'from metrics_provider_options_json', value: opts.greeting + '/' + opts.metrics_proxy_enabled },
        ] };
      });
    },
    upstreamRecentSummaryStats: function () { return Promise.resolve({ stats: {} }); },
    downstreamRecentSummaryStats: function () { return Promise.resolve({ stats: {} }); },
  };
  window.consul.registerMetricsProvider('custom', custom);
}());
"""


def test_custom_provider_file_is_loaded_and_used(prometheus, console, tmp_path):
    provider_file = tmp_path / "custom-provider.js"
    provider_file.write_text(CUSTOM_PROVIDER)
    agent = _agent(f"""
ui_config {{
  enabled = true
  metrics_provider = "custom"
  metrics_provider_files = ["{provider_file}"]
  metrics_provider_options_json = "{{\\"greeting\\": \\"hello\\"}}"
  metrics_proxy {{
    base_url = "{prometheus.url}"
    path_allowlist = ["/api/v1/query"]
  }}
}}
""")
    try:
        script = agent.base + "/ui/assets/compiled-metrics-providers.js"
        with __import__("urllib.request").request.urlopen(script, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert r.headers["Cache-Control"] == "no-cache"
            assert "registerMetricsProvider('custom'" in r.read().decode()
        page = console().page
        page.goto(agent.ui("/ui/dc1/services/shop/instances"))
        expect(page.locator("#service-metrics")).to_have_attribute("data-provider", "custom")
        expect(page.locator('#metrics-stats [data-stat="QPS"] .value')).to_have_text("42")
        expect(page.locator('#metrics-stats [data-stat="OPT"] .value')).to_have_text("hello/true")
        expect(page.locator('#metrics-stats [data-stat="QPS"]')).to_have_attribute("title", "shop queries")
        expect(page.locator("#metrics-series-total")).to_have_text("3 qps")
        # The built-in provider was not asked: the only queries are the custom one's.
        assert [q for _, q, _ in prometheus.queries] and all(q.startswith("custom_metric") for _, q, _ in prometheus.queries)
    finally:
        agent.cleanup()


def test_unknown_provider_is_an_error_and_no_provider_shows_nothing(agent, console):
    page = console().page
    page.goto(agent.ui("/ui/dc1/services/web/instances"))
    expect(page.locator('#instances li[data-instance="web-1"]')).to_be_visible()
    expect(page.locator("#service-metrics")).to_have_count(0)
    status = agent.status(agent.base + "/ui/assets/compiled-metrics-providers.js")
    assert status == 404

    other = Agent(config='ui_config {\n  enabled = true\n  metrics_provider = "nonesuch"\n}\n')
    try:
        other.start()
        other.put("/v1/agent/service/register", {"Name": "shop", "Port": 1})
        page.goto(other.ui("/ui/dc1/services/shop/instances"))
        expect(page.locator("#metrics-error")).to_contain_text('no metrics provider named "nonesuch"')
    finally:
        other.cleanup()
