// The built-in `prometheus` metrics provider: Consul's provider interface over the Prometheus
// HTTP API (/api/v1/query, /api/v1/query_range), reached through the agent's metrics proxy. It
// reads the metrics a service's Envoy sidecar exports (`envoy_*`, labelled with the service as
// `local_cluster`), as Consul's own provider does: HTTP protocols get request rate, error rate and
// latency percentiles; anything else, connection and byte rates.

/** How far back the series and the stats reach. */
const RANGE_S = 15 * 60;
const STEP = '15s';
const L7 = new Set(['http', 'http2', 'grpc']);

/** Compact number: 3 significant digits, k/M/G suffixes. */
export function shortNumber(n) {
  if (!Number.isFinite(n)) return '—';
  const abs = Math.abs(n);
  for (const [limit, suffix] of [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
    if (abs >= limit) return `${Number((n / limit).toPrecision(3))}${suffix}`;
  }
  if (abs !== 0 && abs < 0.01) return n.toExponential(1);
  return String(Number(n.toPrecision(3)));
}

/** A duration in milliseconds, in the largest unit that keeps it readable. */
export function shortDuration(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1) return `${Number(ms.toPrecision(2))}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60e3) return `${Number((ms / 1e3).toPrecision(3))}s`;
  return `${Number((ms / 60e3).toPrecision(3))}min`;
}

/** The label matchers naming the service's traffic, seen from `side`. */
function selector(service, side, l7) {
  const name = JSON.stringify(service);
  if (side === 'downstream') return `consul_service=${name}`;
  const prefixLabel = l7 ? 'envoy_http_conn_manager_prefix' : 'envoy_tcp_prefix';
  const prefix = side === 'upstream' ? `${prefixLabel}=~"upstream.*"` : `${prefixLabel}=~"public_listener.*"`;
  return `local_cluster=${name},${prefix}`;
}

/** The label a grouped query is grouped by, and how a group's name is read from it. */
function grouping(side, l7) {
  if (side === 'upstream') return { by: l7 ? 'envoy_http_conn_manager_prefix' : 'envoy_tcp_prefix', name: (v) => v.replace(/^upstream[._]/, '').replace(/[._](http|tcp)$/, '') };
  if (side === 'downstream') return { by: 'local_cluster', name: (v) => v };
  return null;
}

export const provider = {
  options: {},

  /** Keeps the options; the proxy is the only way this provider reaches Prometheus. */
  init(options) {
    this.options = options || {};
    if (!this.options.metrics_proxy_enabled) {
      throw new Error('the prometheus metrics provider needs ui_config.metrics_proxy.base_url on the agent serving the console');
    }
    if (typeof this.options.httpGet !== 'function') throw new Error('the console gave the provider no httpGet');
  },

  /** Runs an instant query; resolves Prometheus' result list. */
  async instant(query) {
    const r = await this.options.httpGet('/api/v1/query', { query, time: Date.now() / 1000 });
    if (!r || r.status !== 'success' || !r.data) throw new Error(`Prometheus answered ${r && r.error ? r.error : 'without data'}`);
    return r.data.result || [];
  },

  /** Runs a range query from `start` to `end` (seconds); resolves Prometheus' result list. */
  async range(query, start, end) {
    const r = await this.options.httpGet('/api/v1/query_range', { query, start, end, step: STEP });
    if (!r || r.status !== 'success' || !r.data) throw new Error(`Prometheus answered ${r && r.error ? r.error : 'without data'}`);
    return r.data.result || [];
  },

  /**
   * Recent series for the service: `{unitSuffix, labels: {Total, <series>…}, data: [{time,
   * <series>: value}]}` — successes and errors per second for HTTP protocols, inbound and
   * outbound bits per second otherwise.
   */
  async serviceRecentSummarySeries(dc, namespace, service, protocol) {
    const l7 = L7.has(protocol);
    const sel = selector(service, 'service', l7);
    const parts = l7
      ? {
        Successes: `sum(rate(envoy_http_downstream_rq_xx{${sel},envoy_response_code_class!="5"}[1m]))`,
        Errors: `sum(rate(envoy_http_downstream_rq_xx{${sel},envoy_response_code_class="5"}[1m]))`,
      }
      : {
        Inbound: `8 * sum(rate(envoy_tcp_downstream_cx_rx_bytes_total{${sel}}[1m]))`,
        Outbound: `8 * sum(rate(envoy_tcp_downstream_cx_tx_bytes_total{${sel}}[1m]))`,
      };
    const names = Object.keys(parts);
    // One window for every query, so their points share timestamps.
    const end = Math.floor(Date.now() / 1000);
    const results = await Promise.all(names.map((n) => this.range(parts[n], end - RANGE_S, end)));
    const points = new Map();
    results.forEach((result, i) => {
      for (const series of result) {
        for (const [t, v] of series.values || []) {
          const time = Math.round(Number(t) * 1000);
          if (!points.has(time)) points.set(time, Object.fromEntries(names.map((n) => [n, 0])));
          points.get(time)[names[i]] += Number(v) || 0;
        }
      }
    });
    const labels = l7
      ? { Total: 'Requests per second', Successes: 'Responses other than 5xx per second', Errors: '5xx responses per second' }
      : { Total: 'Bits per second, both ways', Inbound: 'Bits received per second', Outbound: 'Bits sent per second' };
    return {
      unitSuffix: l7 ? ' rps' : 'bps',
      labels,
      data: [...points.entries()].sort((a, b) => a[0] - b[0]).map(([time, v]) => ({ time, ...v })),
    };
  },

  /** The four stat definitions for a protocol: label, description, query, formatter. */
  statDefs(service, side, l7) {
    const sel = selector(service, side, l7);
    const g = grouping(side, l7);
    const by = g ? ` by (${g.by})` : '';
    const who = side === 'service' ? service : (side === 'upstream' ? `${service} → {{GROUP}}` : `{{GROUP}} → ${service}`);
    const window = '[15m]';
    if (l7) {
      const rq = side === 'downstream' ? 'envoy_cluster_upstream_rq' : 'envoy_http_downstream_rq';
      return [
        { label: 'RPS', desc: `${who}: requests per second over the last 15 minutes`, fmt: shortNumber,
          query: `sum${by}(rate(${rq}_completed{${sel}}${window}))` },
        { label: 'ER', desc: `${who}: share of requests answered 5xx over the last 15 minutes`, fmt: (v) => `${shortNumber(v)}%`,
          query: `100 * sum${by}(rate(${rq}_xx{${sel},envoy_response_code_class="5"}${window})) / sum${by}(rate(${rq}_xx{${sel}}${window}))` },
        { label: 'P50', desc: `${who}: median response time over the last 15 minutes`, fmt: shortDuration,
          query: `histogram_quantile(0.5, sum by (le${g ? `,${g.by}` : ''}) (rate(${rq}_time_bucket{${sel}}${window})))` },
        { label: 'P99', desc: `${who}: 99th percentile response time over the last 15 minutes`, fmt: shortDuration,
          query: `histogram_quantile(0.99, sum by (le${g ? `,${g.by}` : ''}) (rate(${rq}_time_bucket{${sel}}${window})))` },
      ];
    }
    const cx = side === 'downstream' ? 'envoy_cluster_upstream_cx' : 'envoy_tcp_downstream_cx';
    return [
      { label: 'CR', desc: `${who}: new connections per second over the last 15 minutes`, fmt: shortNumber,
        query: `sum${by}(rate(${cx}_total{${sel}}${window}))` },
      { label: 'RX', desc: `${who}: bits received per second over the last 15 minutes`, fmt: (v) => `${shortNumber(v)}bps`,
        query: `8 * sum${by}(rate(${cx}_rx_bytes_total{${sel}}${window}))` },
      { label: 'TX', desc: `${who}: bits sent per second over the last 15 minutes`, fmt: (v) => `${shortNumber(v)}bps`,
        query: `8 * sum${by}(rate(${cx}_tx_bytes_total{${sel}}${window}))` },
      { label: 'NR', desc: `${who}: failed connections per second over the last 15 minutes`, fmt: shortNumber,
        query: `sum${by}(rate(${cx}_${side === 'downstream' ? 'connect_fail' : 'no_route'}{${sel}}${window}))` },
    ];
  },

  /** `{stats: [{label, desc, value}]}` for the service itself (a stat with no data is left out). */
  async serviceRecentSummaryStats(dc, namespace, service, protocol) {
    const defs = this.statDefs(service, 'service', L7.has(protocol));
    const results = await Promise.all(defs.map((d) => this.instant(d.query)));
    const stats = [];
    defs.forEach((d, i) => {
      const first = results[i][0];
      const v = first && first.value ? Number(first.value[1]) : NaN;
      if (Number.isFinite(v)) stats.push({ label: d.label, desc: d.desc, value: d.fmt(v) });
    });
    return { stats };
  },

  /** `{stats: {<service>: [{label, desc, value}]}}` for each of `service`'s upstreams or downstreams. */
  async groupedStats(service, side) {
    const g = grouping(side, true);
    const defs = [...this.statDefs(service, side, true), ...this.statDefs(service, side, false)];
    const results = await Promise.all(defs.map((d) => this.instant(d.query)));
    const stats = {};
    defs.forEach((d, i) => {
      for (const r of results[i]) {
        const raw = (r.metric || {})[side === 'upstream' ? (d.query.includes('envoy_tcp') ? 'envoy_tcp_prefix' : g.by) : g.by];
        const v = r.value ? Number(r.value[1]) : NaN;
        if (!raw || !Number.isFinite(v)) continue;
        const name = g.name(raw);
        (stats[name] = stats[name] || []).push({ label: d.label, desc: d.desc.replace('{{GROUP}}', name), value: d.fmt(v) });
      }
    });
    return { stats };
  },

  /** Stats of the service's calls to each upstream. */
  upstreamRecentSummaryStats(dc, namespace, service) {
    return this.groupedStats(service, 'upstream');
  },

  /** Stats of each downstream's calls to the service. */
  downstreamRecentSummaryStats(dc, namespace, service) {
    return this.groupedStats(service, 'downstream');
  },
};
