// A service's recent traffic from the configured metrics provider (`ui_config.metrics_provider`):
// the summary series as a chart, the summary stats, and the stats of each upstream and downstream
// the service's topology names. Consul shows these on its topology tab; without a service mesh
// they sit at the top of the service's page. Nothing is shown when no provider is configured.

import { config } from '../lib/config.js';
import { watch } from '../lib/api.js';
import { metricsProvider } from '../lib/metrics.js';
import { h, s, replace } from '../lib/dom.js';
import { errorView } from '../lib/view.js';

/** How often the figures are re-read (metrics have no blocking form; Consul's default). */
const REFRESH_MS = 10000;
const PROTOCOLS = new Set(['tcp', 'http', 'http2', 'grpc']);

/**
 * The protocol passed to the provider: the instances' `protocol` meta when they all agree on a
 * known one (there are no service-defaults config entries here to say it), else the topology's.
 */
export function serviceProtocol(entries, topologyProtocol) {
  const seen = new Set((entries || []).map((e) => ((e.Service && e.Service.Meta) || {}).protocol).filter(Boolean));
  if (seen.size === 1) {
    const [p] = seen;
    if (PROTOCOLS.has(p)) return p;
  }
  return topologyProtocol || 'tcp';
}

/** Descriptions may carry markup in Consul's providers: shown as text, tags removed. */
const ENTITIES = { '&rarr;': '→', '&larr;': '←', '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'", '&nbsp;': ' ' };
function plain(text) {
  return String(text || '').replace(/<[^>]*>/g, '').replace(/&[a-z]+;|&#39;/g, (m) => ENTITIES[m] || m);
}

function statList(stats, id) {
  if (!stats || stats.length === 0) return h('p', { class: 'muted' }, 'No figures for this period.');
  return h('dl', { class: 'stats metric-stats', id }, stats.map((st) =>
    h('div', { class: 'stat', 'data-stat': st.label, title: plain(st.desc) },
      h('dt', { class: 'muted' }, st.label),
      h('dd', { class: 'value' }, String(st.value)),
      h('dd', { class: 'sr-only' }, plain(st.desc)))));
}

/** The series as one SVG line per label, scaled together, with the latest values as a legend. */
function seriesChart(series) {
  const data = (series && series.data) || [];
  const labels = Object.keys((series && series.labels) || {}).filter((l) => l !== 'Total');
  if (data.length === 0 || labels.length === 0) return h('p', { class: 'muted', id: 'metrics-series-empty' }, 'No series for this period.');
  const t0 = data[0].time;
  const t1 = data[data.length - 1].time;
  const span = Math.max(1, t1 - t0);
  const max = Math.max(1e-9, ...data.flatMap((p) => labels.map((l) => Number(p[l]) || 0)));
  const unit = series.unitSuffix || '';
  const last = data[data.length - 1];
  const fmt = (v) => `${Number((Number(v) || 0).toPrecision(3))}${unit}`;
  const total = labels.reduce((n, l) => n + (Number(last[l]) || 0), 0);
  return h('figure', { class: 'chart', id: 'metrics-series', 'data-points': String(data.length) },
    h('h3', {}, series.labels.Total || 'Total'),
    h('span', { class: 'value', id: 'metrics-series-total' }, fmt(total)),
    s('svg', { viewBox: '0 0 300 100', preserveAspectRatio: 'none', role: 'img', 'aria-label': `${labels.join(' and ')} over the last ${Math.round(span / 60000)} minutes` },
      [25, 50, 75].map((y) => s('line', { class: 'grid', x1: 0, x2: 300, y1: y, y2: y })),
      labels.map((l, i) => s('polyline', {
        class: `line series-${i}`,
        points: data.map((p) => `${(((p.time - t0) / span) * 300).toFixed(1)},${(100 - ((Number(p[l]) || 0) / max) * 92).toFixed(1)}`).join(' '),
      }))),
    h('figcaption', {}, h('ul', { class: 'legend' }, labels.map((l, i) =>
      h('li', { 'data-series': l, title: series.labels[l] || l },
        h('span', { class: `swatch series-${i}`, 'aria-hidden': 'true' }), `${l}: `, h('strong', {}, fmt(last[l])))))));
}

function groupedStats(title, id, grouped, names) {
  if (!names.length) return null;
  const stats = (grouped && grouped.stats) || {};
  return [h('h3', {}, title), h('ul', { class: 'plain', id }, names.map((n) =>
    h('li', { 'data-service': n }, h('strong', {}, n), statList(stats[n], null))))];
}

/**
 * The metrics panel for service `name`, or null without a provider. Returns `{el, instances}`:
 * call `instances(entries)` with the service's health entries (they name the protocol).
 */
export function serviceMetrics(ctx, name) {
  if (!config.MetricsProvider) return null;
  const status = h('div', { 'aria-live': 'polite' });
  const body = h('div', { class: 'metrics-body' }, h('p', { class: 'muted' }, 'Loading metrics…'));
  const el = h('section', { id: 'service-metrics', 'aria-labelledby': 'service-metrics-title', 'data-provider': config.MetricsProvider },
    h('h2', { class: 'section', id: 'service-metrics-title' }, 'Traffic'),
    h('p', { class: 'muted', id: 'metrics-protocol' }),
    status, body);
  let entries = null;
  let topology = null;
  let timer = null;
  let running = false;

  async function refresh() {
    clearTimeout(timer);
    if (ctx.signal.aborted || entries === null || topology === null || running) return;
    running = true;
    try {
      const provider = await metricsProvider();
      const protocol = serviceProtocol(entries, topology.Protocol);
      replace(el.querySelector('#metrics-protocol'), `Protocol ${protocol}, last 15 minutes, from the ${config.MetricsProvider} metrics provider.`);
      const ups = (topology.Upstreams || []).map((u) => u.Name);
      const downs = (topology.Downstreams || []).map((d) => d.Name);
      const [series, stats, upstream, downstream] = await Promise.all([
        provider.serviceRecentSummarySeries(ctx.dc, '', name, protocol, {}),
        provider.serviceRecentSummaryStats(ctx.dc, '', name, protocol, {}),
        ups.length ? provider.upstreamRecentSummaryStats(ctx.dc, '', name, '', {}) : null,
        downs.length ? provider.downstreamRecentSummaryStats(ctx.dc, '', name, {}) : null,
      ]);
      if (ctx.signal.aborted) return;
      replace(status);
      replace(body,
        statList(stats && stats.stats, 'metrics-stats'),
        seriesChart(series),
        groupedStats('Upstreams', 'metrics-upstreams', upstream, ups),
        groupedStats('Downstreams', 'metrics-downstreams', downstream, downs));
    } catch (e) {
      if (ctx.signal.aborted) return;
      replace(status, h('div', { class: 'error', role: 'alert', id: 'metrics-error' },
        h('strong', {}, 'Metrics unavailable'),
        h('pre', {}, String(e && e.message ? e.message : e))));
      replace(body);
    } finally {
      running = false;
      if (!ctx.signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
    }
  }
  ctx.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });

  watch(`/v1/internal/ui/service-topology/${encodeURIComponent(name)}`, {
    params: { kind: '' }, signal: ctx.signal,
    onData: (d) => { const first = topology === null; topology = d || {}; if (first) refresh(); },
    onError: (e) => {
      // Without the topology the provider can still be asked, as for a plain tcp service.
      if (topology === null) { topology = {}; refresh(); }
      replace(status, errorView(e));
    },
  });
  return {
    el,
    instances(list) {
      const first = entries === null;
      entries = list || [];
      if (first) refresh();
    },
  };
}
