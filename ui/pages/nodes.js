// Nodes: catalog nodes with gossip health, addresses, metadata and the network-coordinate round
// trip from this agent; one node's checks, service instances and sessions.

import { watch } from '../lib/api.js';
import { config } from '../lib/config.js';
import { h, replace } from '../lib/dom.js';
import { pageHeader, region, statusBadge, metaList, loading, tagList } from '../lib/view.js';
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
  // Gossip membership as this agent sees it (no blocking support: re-read every few seconds).
  watch('/v1/agent/members', {
    signal: ctx.signal, refreshMs: 5000,
    onData: (d) => { members = Object.fromEntries((d || []).map((m) => [m.Name, m.Status])); redraw(); },
    onError: () => {},
  });
  watch('/v1/coordinate/nodes', {
    signal: ctx.signal,
    onData: (d) => { coords = Object.fromEntries((d || []).map((c) => [c.Node, c.Coord])); redraw(); },
    onError: () => {},
  });
}

/** /ui/:dc/nodes/:node/:tab */
export function nodePage(ctx, node, tab) {
  document.title = `${node} - Nodes - Consul-rs`;
  const info = loading();
  const checks = loading();
  const services = loading();
  const sessions = loading();
  replace(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: ctx.link('nodes') }, 'All nodes')),
    pageHeader(node),
    info,
    h('h2', { class: 'section', id: 'health-checks' }, 'Health checks'), checks,
    h('h2', { class: 'section', id: 'service-instances' }, 'Service instances'), services,
    h('h2', { class: 'section', id: 'lock-sessions' }, 'Lock sessions'), sessions);
  const showInfo = region(info, (d) => (d && d.Node
    ? h('div', { 'data-tab': tab },
      h('dl', { class: 'meta' },
        h('dt', {}, 'Address'), h('dd', { class: 'address' }, d.Node.Address),
        h('dt', {}, 'Datacenter'), h('dd', {}, d.Node.Datacenter),
        h('dt', {}, 'ID'), h('dd', {}, d.Node.ID || '—')),
      h('h2', { class: 'section', id: 'metadata' }, 'Metadata'), metaList(d.Node.Meta))
    : h('p', { class: 'error', role: 'alert' }, `Node ${node} is not in the catalog.`)));
  const showServices = region(services, (d) => {
    const list = Object.values((d && d.Services) || {});
    if (list.length === 0) return h('p', { class: 'muted' }, 'No service instances.');
    return h('ul', { class: 'plain' }, list.map((s) => h('li', {},
      h('a', { href: ctx.link(`services/${encodeURIComponent(s.Service)}/instances/${encodeURIComponent(node)}/${encodeURIComponent(s.ID)}/health-checks`) }, s.ID),
      h('span', { class: 'muted' }, ` ${s.Service} :${s.Port} `), tagList(s.Tags))));
  });
  const showChecks = region(checks, (d) => h('div', { 'data-health': worstStatus(d) }, checkList(d)));
  const showSessions = region(sessions, (d) => {
    if (!d || d.length === 0) return h('p', { class: 'muted' }, 'No sessions.');
    return h('ul', { class: 'plain' }, d.map((s) => h('li', {}, h('code', {}, s.ID), ` ${s.Name || ''} (${s.Behavior})`)));
  });
  const catalog = (d) => { showInfo.data(d); showServices.data(d); };
  const catalogError = (e) => { showInfo.error(e); showServices.error(e); };
  watch(`/v1/catalog/node/${encodeURIComponent(node)}`, { signal: ctx.signal, onData: catalog, onError: catalogError });
  watch(`/v1/health/node/${encodeURIComponent(node)}`, { signal: ctx.signal, onData: showChecks.data, onError: showChecks.error });
  watch(`/v1/session/node/${encodeURIComponent(node)}`, { signal: ctx.signal, onData: showSessions.data, onError: showSessions.error });
}
