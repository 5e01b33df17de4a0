// Overview: Raft leader and peers, gossip members, autopilot health, and live charts sampled from
// /v1/agent/metrics (read on a timer with autopilot health: neither can block).

import { request, watch } from '../lib/api.js';
import { h, s, replace } from '../lib/dom.js';
import { pageHeader, region, loading, statusBadge, table } from '../lib/view.js';
import { millis } from '../lib/format.js';

const SAMPLE_MS = 3000;
const MEMBER_STATUS = ['none', 'alive', 'leaving', 'left', 'failed'];
const POINTS = 60;
/** The agent's metrics interval (Consul's in-memory sink keeps 10 s intervals). */
const INTERVAL_S = 10;

/** Values shown on the charts, from one /v1/agent/metrics answer. */
export function readMetrics(m) {
  const samples = m.Samples || [];
  const kv = samples.filter((x) => x.Name === 'consul.kvs.apply').reduce((n, x) => n + x.Count, 0);
  const commit = samples.filter((x) => x.Name === 'consul.raft.commitTime');
  // Blocking queries are HTTP requests too; ones that waited (mean over a second) would swamp
  // the request latency, so they are left out.
  const http = samples.filter((x) => x.Name === 'consul.api.http' && x.Count > 0 && x.Sum / x.Count < 1000);
  const mean = (list) => {
    const count = list.reduce((n, x) => n + x.Count, 0);
    return count ? list.reduce((n, x) => n + x.Sum, 0) / count : null;
  };
  return { kvOps: kv / INTERVAL_S, commitMs: mean(commit), httpMs: mean(http) };
}

function chart(id, title, unit) {
  const points = [];
  const value = h('span', { class: 'value' }, '—');
  const svg = s('svg', { viewBox: '0 0 300 100', preserveAspectRatio: 'none', role: 'img', 'aria-label': `${title} over the last ${(POINTS * SAMPLE_MS) / 60000} minutes` });
  const scale = h('span', { class: 'muted' });
  const el = h('figure', { class: 'chart', id, 'data-points': '0' },
    h('h3', {}, title), value, ' ', h('span', { class: 'muted' }, unit), svg,
    h('figcaption', { class: 'muted' }, 'max ', scale));
  return {
    el,
    push(v) {
      points.push(v === null ? null : Number(v));
      if (points.length > POINTS) points.shift();
      el.dataset.points = String(points.length);
      value.textContent = v === null ? '—' : (unit === 'ms' ? millis(v).replace(' ms', '') : v.toFixed(2));
      const max = Math.max(1e-9, ...points.filter((p) => p !== null));
      scale.textContent = unit === 'ms' ? millis(max) : `${max.toFixed(2)} ${unit}`;
      const step = 300 / (POINTS - 1);
      const coords = points.map((p, i) => [(i + POINTS - points.length) * step, p === null ? 100 : 100 - (p / max) * 92]);
      const line = coords.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
      replace(svg,
        [25, 50, 75].map((y) => s('line', { class: 'grid', x1: 0, x2: 300, y1: y, y2: y })),
        coords.length > 1 ? s('polygon', { class: 'area', points: `${coords[0][0].toFixed(1)},100 ${line} ${coords[coords.length - 1][0].toFixed(1)},100` }) : null,
        s('polyline', { class: 'line', points: line }));
    },
  };
}

/** /ui/:dc/overview */
export function overviewPage(ctx) {
  document.title = 'Overview - Consul-rs';
  const leader = h('span', { class: 'value', id: 'raft-leader' }, '…');
  const tolerance = h('span', { class: 'value', id: 'failure-tolerance' }, '…');
  const healthy = h('span', { class: 'value', id: 'autopilot-healthy' }, '…');
  const peers = loading();
  const servers = loading();
  const members = loading();
  const charts = {
    kv: chart('chart-kv', 'KV operations', 'ops/s'),
    commit: chart('chart-commit', 'Raft commit time', 'ms'),
    http: chart('chart-http', 'HTTP latency (mean, without long polls)', 'ms'),
  };
  const metricsError = h('div', {});
  const catalog = h('div', { id: 'catalog-overview' });
  replace(ctx.main,
    pageHeader('Overview'),
    h('div', { class: 'stats' },
      h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Raft leader'), leader),
      h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Autopilot'), healthy),
      h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Failure tolerance'), tolerance)),
    catalog,
    h('h2', { class: 'section' }, 'Live metrics'),
    metricsError,
    h('div', { class: 'charts' }, charts.kv.el, charts.commit.el, charts.http.el),
    h('h2', { class: 'section' }, 'Raft peers'), peers,
    h('h2', { class: 'section' }, 'Server health'), servers,
    h('h2', { class: 'section' }, 'Gossip members'), members);

  let autopilot = null;
  const showPeers = region(peers, (cfg) => table('Raft peers', ['Node', 'Address', 'Role', 'Voter', 'Last contact'],
    (cfg.Servers || []).map((p) => {
      const health = autopilot && (autopilot.Servers || []).find((x) => x.ID === p.ID);
      return { attrs: { 'data-peer': p.Node }, cells: [p.Node, h('span', { class: 'address' }, p.Address), p.Leader ? 'leader' : 'follower', p.Voter ? 'yes' : 'no', health ? health.LastContact : '—'] };
    }), { id: 'raft-peers' }));
  let lastConfig = null;
  const showServers = region(servers, (ap) => {
    replace(tolerance, String(ap.FailureTolerance));
    replace(healthy, statusBadge(ap.Healthy ? 'passing' : 'critical'), ap.Healthy ? ' healthy' : ' unhealthy');
    return table('Server health', ['Server', 'Address', 'Health', 'Serf', 'Voter', 'Last contact', 'Last index'],
      (ap.Servers || []).map((x) => ({ attrs: { 'data-server': x.Name }, cells: [x.Name, h('span', { class: 'address' }, x.Address), statusBadge(x.Healthy ? 'passing' : 'critical'), x.SerfStatus, x.Voter ? 'yes' : 'no', x.LastContact, String(x.LastIndex)] })),
      { id: 'autopilot-servers' });
  });
  watch('/v1/status/leader', { signal: ctx.signal, onData: (d) => replace(leader, d || 'no leader'), onError: (e) => replace(leader, `error: ${e.message}`) });
  // The Raft configuration blocks until the membership changes (the agent's blocking form of
  // this endpoint, keyed by the membership's log index).
  watch('/v1/operator/raft/configuration', { signal: ctx.signal, onData: (d) => { lastConfig = d; showPeers.data(d); }, onError: showPeers.error });
  // Gossip members block until the agent sees a membership change.
  const showMembers = region(members, (list) => table('Gossip members', ['Member', 'Address', 'Status', 'Role', 'Datacenter'],
    (list || []).map((m) => ({
      attrs: { 'data-member': m.Name, 'data-health': m.Status === 1 ? 'passing' : 'critical' },
      cells: [m.Name, h('span', { class: 'address' }, `${m.Addr}:${m.Port}`), MEMBER_STATUS[m.Status] || String(m.Status),
        (m.Tags || {}).role === 'consul' ? 'server' : 'client', (m.Tags || {}).dc || '—'],
    })), { id: 'gossip-members' }));
  watch('/v1/agent/members', { signal: ctx.signal, onData: showMembers.data, onError: showMembers.error });

  // Catalog totals, when the agent has the console's summary endpoint.
  watch('/v1/internal/ui/catalog-overview', {
    signal: ctx.signal,
    onData: (d) => replace(catalog, catalogSummary(d)),
    onError: () => replace(catalog),
  });

  // Autopilot health has no blocking form and its timing fields (last contact, stable since)
  // change on every read, so it is sampled here with the charts rather than watched.
  const sampleAutopilot = async () => {
    try {
      const r = await request('/v1/operator/autopilot/health', { signal: ctx.signal });
      if (ctx.signal.aborted) return;
      autopilot = r.data;
      showServers.data(r.data);
      if (lastConfig) showPeers.data(lastConfig);
    } catch (e) {
      if (!ctx.signal.aborted) showServers.error(e);
    }
  };

  const sample = async () => {
    if (ctx.signal.aborted) return;
    sampleAutopilot();
    try {
      const r = await request('/v1/agent/metrics', { signal: ctx.signal });
      const m = readMetrics(r.data);
      charts.kv.push(m.kvOps);
      charts.commit.push(m.commitMs);
      charts.http.push(m.httpMs);
      replace(metricsError);
    } catch (e) {
      if (ctx.signal.aborted) return;
      replace(metricsError, h('p', { class: 'muted' }, `Metrics unavailable: ${e.message}`));
    }
    if (!ctx.signal.aborted) setTimeout(sample, SAMPLE_MS);
  };
  sample();
}

/** Totals per kind (nodes, services, checks) from /v1/internal/ui/catalog-overview: each kind is a
 * list of summaries carrying Total/Passing/Warning/Critical. */
function catalogSummary(d) {
  const kinds = Object.entries(d || {}).filter(([, v]) => Array.isArray(v));
  if (kinds.length === 0) return null;
  const sum = (list, field) => list.reduce((n, x) => n + (Number(x[field]) || 0), 0);
  return h('div', { class: 'stats catalog' }, kinds.map(([kind, list]) =>
    h('div', { class: 'stat', 'data-kind': kind },
      h('span', { class: 'muted' }, kind),
      h('span', { class: 'value' }, String(sum(list, 'Total') || list.length)),
      h('span', { class: 'counts' },
        h('span', { class: 'count status-passing' }, `✓ ${sum(list, 'Passing')}`),
        h('span', { class: 'count status-warning' }, `! ${sum(list, 'Warning')}`),
        h('span', { class: 'count status-critical' }, `✕ ${sum(list, 'Critical')}`)))));
}
