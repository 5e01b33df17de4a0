// Nodes: catalog nodes with gossip health, addresses, metadata and the network-coordinate round
// trip from this agent; one node's tabs (checks, service instances, round trip times, lock
// sessions, metadata), each at Consul's URL.

import { watch } from '../lib/api.js';
import { config } from '../lib/config.js';
import { h, replace } from '../lib/dom.js';
import { pageHeader, region, statusBadge, metaList, loading, tagList, table } from '../lib/view.js';
import { millis, rttMillis, worstStatus } from '../lib/format.js';
import { checkList } from './checks.js';

/** /ui/:dc/nodes */
export function nodesPage(ctx) {
  document.title = 'Nodes - Consul-rs';
  const list = loading();
  replace(ctx.main, pageHeader('Nodes'), list);
  let nodes = null;
  let serf = {};
  let coords = {};
  let members = {};
  const memberStatus = ['none', 'alive', 'leaving', 'left', 'failed'];
  const show = region(list, () => {
    if (nodes.length === 0) return h('p', { class: 'muted' }, 'No nodes.');
    const mine = coords[config.NodeName];
    return h('div', { class: 'table-wrap' }, h('table', { id: 'nodes' },
      h('caption', { class: 'sr-only' }, 'Nodes'),
      h('thead', {}, h('tr', {}, ['Node', 'Gossip', 'Address', 'Round trip', 'Metadata'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, nodes.map((n) => {
        const check = serf[n.Node];
        const status = check ? check.Status : 'unknown';
        const rtt = n.Node === config.NodeName ? 0 : rttMillis(mine, coords[n.Node]);
        return h('tr', { 'data-node': n.Node, 'data-health': status },
          h('td', {}, h('a', { href: ctx.link(`nodes/${encodeURIComponent(n.Node)}/health-checks`) }, n.Node),
            n.Node === config.NodeName ? h('span', { class: 'muted' }, ' (this agent)') : null),
          h('td', {}, statusBadge(status),
            members[n.Node] !== undefined ? h('span', { class: 'member' }, ` member ${memberStatus[members[n.Node]] || members[n.Node]}`) : null,
            check && check.Output ? h('div', { class: 'muted' }, check.Output.split('\n')[0]) : null),
          h('td', { class: 'address' }, n.Address, n.TaggedAddresses && n.TaggedAddresses.wan && n.TaggedAddresses.wan !== n.Address ? h('span', { class: 'muted' }, ` (wan ${n.TaggedAddresses.wan})`) : null),
          h('td', { class: 'rtt' }, rtt === null ? '—' : millis(rtt)),
          h('td', {}, tagList(Object.entries(n.Meta || {}).map(([k, v]) => `${k}=${v}`))));
      }))));
  });
  const redraw = () => { if (nodes) show.data(); };
  watch('/v1/catalog/nodes', { signal: ctx.signal, onData: (d) => { nodes = d || []; redraw(); }, onError: show.error });
  watch('/v1/health/state/any', {
    params: { filter: 'CheckID == "serfHealth"' }, signal: ctx.signal,
    onData: (d) => { serf = Object.fromEntries((d || []).map((c) => [c.Node, c])); redraw(); },
    onError: show.error,
  });
  // Gossip membership as this agent sees it (blocking on the agent's membership-change count).
  watch('/v1/agent/members', {
    signal: ctx.signal,
    onData: (d) => { members = Object.fromEntries((d || []).map((m) => [m.Name, m.Status])); redraw(); },
    onError: () => {},
  });
  watch('/v1/coordinate/nodes', {
    signal: ctx.signal,
    onData: (d) => { coords = Object.fromEntries((d || []).map((c) => [c.Node, c.Coord])); redraw(); },
    onError: () => {},
  });
}

/** The node page's tabs: Consul's URL segments and their labels. */
export const NODE_TABS = [
  ['health-checks', 'Health checks'],
  ['service-instances', 'Service instances'],
  ['round-trip-time', 'Round trip time'],
  ['lock-sessions', 'Lock sessions'],
  ['metadata', 'Metadata'],
];

/** Round trip times from `node` to every other node with a coordinate: min, median, max (ms). */
export function rttSummary(coords, node) {
  const mine = coords[node];
  const others = Object.entries(coords).filter(([n]) => n !== node)
    .map(([n, c]) => [n, rttMillis(mine, c)]).filter(([, v]) => v !== null)
    .sort((a, b) => a[1] - b[1]);
  if (!mine || others.length === 0) return null;
  const values = others.map(([, v]) => v);
  const mid = Math.floor(values.length / 2);
  const median = values.length % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  return { min: values[0], median, max: values[values.length - 1], others };
}

/** /ui/:dc/nodes/:node/:tab — one node, one tab (Consul's segments; the URL names the tab). */
export function nodePage(ctx, node, tab) {
  if (!NODE_TABS.some(([t]) => t === tab)) {
    ctx.redirect(`nodes/${encodeURIComponent(node)}/health-checks`);
    return;
  }
  const label = NODE_TABS.find(([t]) => t === tab)[1];
  document.title = `${label} - ${node} - Nodes - Consul-rs`;
  const info = loading();
  const panel = loading();
  panel.id = 'node-tab';
  panel.dataset.tab = tab;
  panel.setAttribute('aria-labelledby', `tab-${tab}`);
  const tabs = h('nav', { class: 'tabs', 'aria-label': `${node} sections` }, h('ul', {}, NODE_TABS.map(([t, text]) =>
    h('li', {}, h('a', {
      id: `tab-${t}`, href: ctx.link(`nodes/${encodeURIComponent(node)}/${t}`), 'data-tab': t,
      'aria-current': t === tab ? 'page' : null,
    }, text)))));
  replace(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: ctx.link('nodes') }, 'All nodes')),
    pageHeader(node),
    info,
    tabs,
    h('h2', { class: 'sr-only', id: tab }, label),
    panel);
  const showInfo = region(info, (d) => (d && d.Node
    ? h('dl', { class: 'meta' },
      h('dt', {}, 'Address'), h('dd', { class: 'address' }, d.Node.Address),
      h('dt', {}, 'Datacenter'), h('dd', {}, d.Node.Datacenter),
      h('dt', {}, 'ID'), h('dd', {}, d.Node.ID || '—'))
    : h('p', { class: 'error', role: 'alert' }, `Node ${node} is not in the catalog.`)));
  const nodePath = encodeURIComponent(node);
  const catalogError = (e) => { showInfo.error(e); if (show) show.error(e); };
  let show = null;
  if (tab === 'health-checks') {
    show = region(panel, (d) => h('div', { 'data-health': worstStatus(d) }, checkList(d)));
    watch(`/v1/health/node/${nodePath}`, { signal: ctx.signal, onData: show.data, onError: show.error });
  } else if (tab === 'service-instances') {
    show = region(panel, (d) => {
      const list = Object.values((d && d.Services) || {});
      if (list.length === 0) return h('p', { class: 'muted' }, 'No service instances.');
      return h('ul', { class: 'plain', id: 'node-services' }, list.map((sv) => h('li', { 'data-service': sv.ID },
        h('a', { href: ctx.link(`services/${encodeURIComponent(sv.Service)}/instances/${nodePath}/${encodeURIComponent(sv.ID)}/health-checks`) }, sv.ID),
        h('span', { class: 'muted' }, ` ${sv.Service} :${sv.Port} `), tagList(sv.Tags))));
    });
  } else if (tab === 'round-trip-time') {
    show = region(panel, (coords) => {
      const all = Object.fromEntries((coords || []).map((c) => [c.Node, c.Coord]));
      const fromAgent = node === config.NodeName ? 0 : rttMillis(all[config.NodeName], all[node]);
      const sum = rttSummary(all, node);
      return h('div', { id: 'node-rtt' },
        h('dl', { class: 'meta' },
          h('dt', {}, 'From this agent'), h('dd', { class: 'rtt', id: 'rtt-from-agent' }, fromAgent === null ? '—' : millis(fromAgent)),
          sum ? [h('dt', {}, 'Minimum'), h('dd', { class: 'rtt' }, millis(sum.min)),
            h('dt', {}, 'Median'), h('dd', { class: 'rtt', id: 'rtt-median' }, millis(sum.median)),
            h('dt', {}, 'Maximum'), h('dd', { class: 'rtt' }, millis(sum.max))] : null),
        sum ? table('Round trip time to each node', ['Node', 'Round trip'],
          sum.others.map(([n, v]) => ({ attrs: { 'data-node': n }, cells: [n, h('span', { class: 'rtt' }, millis(v))] })))
          : h('p', { class: 'muted' }, 'No network coordinates to compare yet.'));
    });
    watch('/v1/coordinate/nodes', { signal: ctx.signal, onData: show.data, onError: show.error });
  } else if (tab === 'lock-sessions') {
    show = region(panel, (d) => {
      if (!d || d.length === 0) return h('p', { class: 'muted' }, 'No sessions.');
      return h('ul', { class: 'plain', id: 'node-sessions' }, d.map((x) => h('li', { 'data-session': x.ID },
        h('code', {}, x.ID), ` ${x.Name || ''} (${x.Behavior}) `, h('a', { href: ctx.link('sessions') }, 'all sessions'))));
    });
    watch(`/v1/session/node/${nodePath}`, { signal: ctx.signal, onData: show.data, onError: show.error });
  } else {
    show = region(panel, (d) => (d && d.Node ? h('div', { id: 'node-meta' }, metaList(d.Node.Meta)) : null));
  }
  // The node record feeds the header, and the service and metadata tabs.
  const catalog = (d) => {
    showInfo.data(d);
    if (tab === 'service-instances' || tab === 'metadata') show.data(d);
  };
  watch(`/v1/catalog/node/${nodePath}`, { signal: ctx.signal, onData: catalog, onError: catalogError });
}
