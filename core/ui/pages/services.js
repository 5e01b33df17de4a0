// Services: the catalog's services with health summaries, a service's instances and one
// instance's health checks.

import { request, watch, ApiError } from '../lib/api.js';
import { h, replace } from '../lib/dom.js';
import { pageHeader, region, statusBadge, tagList, metaList, loading, errorView } from '../lib/view.js';
import { worstStatus } from '../lib/format.js';
import { config } from '../lib/config.js';
import { checkList } from './checks.js';
import { serviceMetrics } from './service-metrics.js';

/** Builds Consul's filter expression for a plain-text search. */
export function searchFilter(text, fields) {
  const quoted = JSON.stringify(text);
  return fields.map((f) => `${f} contains ${quoted}`).join(' or ');
}

function counts(s) {
  return h('span', { class: 'counts', 'aria-label': `${s.ChecksPassing} passing, ${s.ChecksWarning} warning, ${s.ChecksCritical} critical` },
    h('span', { class: 'count status-passing', title: 'passing' }, `✓ ${s.ChecksPassing}`),
    h('span', { class: 'count status-warning', title: 'warning' }, `! ${s.ChecksWarning}`),
    h('span', { class: 'count status-critical', title: 'critical' }, `✕ ${s.ChecksCritical}`));
}

function healthOf(s) {
  if (s.ChecksCritical > 0) return 'critical';
  if (s.ChecksWarning > 0) return 'warning';
  return 'passing';
}

const SORTS = {
  'name-asc': (a, b) => a.Name.localeCompare(b.Name),
  'name-desc': (a, b) => b.Name.localeCompare(a.Name),
  health: (a, b) => b.ChecksCritical - a.ChecksCritical || b.ChecksWarning - a.ChecksWarning || a.Name.localeCompare(b.Name),
};

/** Turns /v1/catalog/services + /v1/health/state/any into the internal endpoint's summaries (for
 * agents without /v1/internal/ui/services). */
function summarize(catalog, checks) {
  const out = [];
  for (const [name, tags] of Object.entries(catalog || {})) {
    const mine = (checks || []).filter((c) => c.ServiceName === name);
    out.push({
      Name: name, Tags: tags || [], Kind: '', InstanceCount: null,
      ChecksPassing: mine.filter((c) => c.Status === 'passing').length,
      ChecksWarning: mine.filter((c) => c.Status === 'warning').length,
      ChecksCritical: mine.filter((c) => c.Status === 'critical').length,
    });
  }
  return out;
}

/** /ui/:dc/services */
export function servicesPage(ctx) {
  document.title = 'Services - Consul-rs';
  const initialFilter = ctx.query.get('filter') || '';
  const raw = ctx.query.get('raw') === '1';
  const search = h('input', { type: 'search', id: 'service-filter', name: 'filter', value: initialFilter, placeholder: 'Search by name or tag', 'aria-label': 'Filter services' });
  const rawBox = h('input', { type: 'checkbox', id: 'service-filter-raw', checked: raw });
  const sort = h('select', { id: 'service-sort', 'aria-label': 'Sort services' },
    h('option', { value: 'name-asc' }, 'Name A–Z'),
    h('option', { value: 'name-desc' }, 'Name Z–A'),
    h('option', { value: 'health' }, 'Health: unhealthy first'));
  sort.value = ctx.query.get('sort') || 'name-asc';
  const list = loading();
  replace(ctx.main,
    pageHeader('Services'),
    h('form', { class: 'toolbar', role: 'search', onsubmit: (e) => { e.preventDefault(); restart(); } },
      search,
      h('label', { for: 'service-filter-raw', class: 'inline' }, rawBox, ' Raw filter expression'),
      h('label', { for: 'service-sort', class: 'inline' }, 'Sort ', sort)),
    list);

  let latest = [];
  let child = null;
  const show = region(list, (services) => {
    const sorted = [...services].sort(SORTS[sort.value] || SORTS['name-asc']);
    if (sorted.length === 0) return h('p', { class: 'muted', id: 'no-services' }, 'No services match.');
    return h('div', { class: 'table-wrap' }, h('table', { id: 'services' },
      h('caption', { class: 'sr-only' }, 'Services'),
      h('thead', {}, h('tr', {}, ['Service', 'Health', 'Instances', 'Tags'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, sorted.map((s) => h('tr', { 'data-service': s.Name, 'data-health': healthOf(s) },
        h('td', {}, statusBadge(healthOf(s)), ' ', h('a', { href: ctx.link(`services/${encodeURIComponent(s.Name)}/instances`) }, s.Name), s.Kind ? h('span', { class: 'muted' }, ` ${s.Kind}`) : null),
        h('td', {}, counts(s)),
        h('td', {}, s.InstanceCount ?? '—'),
        h('td', {}, tagList(s.Tags)))))));
  });

  /** The ?filter= for the search box: raw mode sends the text as is; otherwise a name-or-tag
   * match over the endpoint's own selectors (the console endpoint filters service entries, as
   * Consul's does; the catalog fallback filters catalog service nodes). */
  function expression(fields) {
    const text = search.value.trim();
    if (!text) return null;
    return rawBox.checked ? text : searchFilter(text, fields);
  }

  function restart() {
    if (child) child.abort();
    child = new AbortController();
    ctx.signal.addEventListener('abort', () => child.abort(), { once: true });
    const params = new URLSearchParams();
    if (search.value.trim()) params.set('filter', search.value.trim());
    if (rawBox.checked) params.set('raw', '1');
    if (sort.value !== 'name-asc') params.set('sort', sort.value);
    history.replaceState(null, '', `${location.pathname}${params.toString() ? `?${params}` : ''}`);
    start(child.signal);
  }

  async function start(signal) {
    const filter = expression(['Service.Service', 'Service.Tags']);
    // Prefer the console endpoint (one request per change); fall back to public endpoints.
    try {
      await request('/v1/internal/ui/services', { params: { filter }, signal });
      watch('/v1/internal/ui/services', { params: { filter }, signal, onData: (d) => { latest = d || []; show.data(latest); }, onError: show.error });
      return;
    } catch (e) {
      if (signal.aborted) return;
      if (!(e instanceof ApiError && e.status === 404)) { show.error(e); return; }
    }
    let catalog = null;
    let checks = [];
    const fallbackFilter = expression(['ServiceName', 'ServiceTags']);
    const update = () => { if (catalog) { latest = summarize(catalog, checks); show.data(latest); } };
    watch('/v1/catalog/services', { params: { filter: fallbackFilter }, signal, onData: (d) => { catalog = d || {}; update(); }, onError: show.error });
    watch('/v1/health/state/any', { signal, onData: (d) => { checks = d || []; update(); }, onError: show.error });
  }

  let timer = null;
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(restart, 300); });
  rawBox.addEventListener('change', restart);
  sort.addEventListener('change', () => { show.data(latest); restart(); });
  restart();
}

function instanceSummary(ctx, name, e) {
  const svc = e.Service;
  const status = worstStatus(e.Checks);
  const addr = svc.Address || e.Node.Address;
  return h('li', { class: `card instance status-${status}`, 'data-instance': svc.ID, 'data-node': e.Node.Node, 'data-health': status },
    h('h2', {}, statusBadge(status), ' ',
      h('a', { href: ctx.link(`services/${encodeURIComponent(name)}/instances/${encodeURIComponent(e.Node.Node)}/${encodeURIComponent(svc.ID)}/health-checks`) }, svc.ID)),
    h('dl', { class: 'meta compact' },
      h('dt', {}, 'Node'), h('dd', {}, h('a', { href: ctx.link(`nodes/${encodeURIComponent(e.Node.Node)}/health-checks`) }, e.Node.Node)),
      h('dt', {}, 'Address'), h('dd', { class: 'address' }, `${addr}:${svc.Port}`),
      h('dt', {}, 'Tags'), h('dd', {}, tagList(svc.Tags))),
    h('h3', {}, 'Health checks'),
    checkList(e.Checks),
    Object.keys(svc.Meta || {}).length ? [h('h3', {}, 'Metadata'), metaList(svc.Meta)] : null);
}

/** Fills a `ui_config.dashboard_url_templates` template as Consul's console does:
 * `{{Service.Name}}`, `{{Service.Namespace}}`, `{{Service.Partition}}` and `{{Datacenter}}`, each
 * URL-encoded. Exported for the unit test. */
export function dashboardUrl(template, service, dc) {
  const values = { 'Service.Name': service, 'Service.Namespace': 'default', 'Service.Partition': 'default', Datacenter: dc };
  return template.replace(/\{\{\s*([A-Za-z.]+)\s*\}\}/g, (all, key) => (key in values ? encodeURIComponent(values[key]) : all));
}

/** The service's "Open dashboard" link, when the agent has a `service` dashboard template. */
function dashboardLink(ctx, name) {
  const template = config.DashboardURLTemplates && config.DashboardURLTemplates.service;
  if (!template) return null;
  return h('a', { class: 'button', id: 'service-dashboard', href: dashboardUrl(template, name, ctx.dc), target: '_blank', rel: 'noopener noreferrer' }, 'Open dashboard');
}

/** /ui/:dc/services/:name/instances */
export function instancesPage(ctx, name) {
  document.title = `${name} - Services - Consul-rs`;
  const list = loading();
  const metrics = serviceMetrics(ctx, name);
  replace(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: ctx.link('services') }, 'All services')),
    pageHeader(name, dashboardLink(ctx, name)),
    metrics ? metrics.el : null,
    h('h2', { class: 'section' }, 'Instances'),
    list);
  const show = region(list, (entries) => {
    if (metrics) metrics.instances(entries);
    if (!entries || entries.length === 0) return h('p', { class: 'muted' }, 'This service has no instances.');
    return h('ul', { class: 'cards', id: 'instances' }, entries.map((e) => instanceSummary(ctx, name, e)));
  });
  watch(`/v1/health/service/${encodeURIComponent(name)}`, { signal: ctx.signal, onData: show.data, onError: show.error });
}

/** /ui/:dc/services/:name/instances/:node/:id/health-checks (and the other instance tabs). */
export function instancePage(ctx, name, node, id, tab) {
  document.title = `${id} - ${name} - Consul-rs`;
  const body = loading();
  replace(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
      h('a', { href: ctx.link('services') }, 'All services'), ' / ',
      h('a', { href: ctx.link(`services/${encodeURIComponent(name)}/instances`) }, name)),
    pageHeader(id),
    body);
  const show = region(body, (entries) => {
    const e = (entries || []).find((x) => x.Node.Node === node && x.Service.ID === id);
    if (!e) return errorView(new Error(`No instance ${id} of ${name} on node ${node}.`));
    const svc = e.Service;
    const serviceChecks = e.Checks.filter((c) => c.ServiceID === id);
    const nodeChecks = e.Checks.filter((c) => c.ServiceID !== id);
    return h('div', { 'data-tab': tab },
      h('dl', { class: 'meta' },
        h('dt', {}, 'Service'), h('dd', {}, svc.Service),
        h('dt', {}, 'Node'), h('dd', {}, h('a', { href: ctx.link(`nodes/${encodeURIComponent(node)}/health-checks`) }, node)),
        h('dt', {}, 'Address'), h('dd', { class: 'address' }, `${svc.Address || e.Node.Address}:${svc.Port}`),
        h('dt', {}, 'Tags'), h('dd', {}, tagList(svc.Tags))),
      h('h2', { class: 'section', id: 'health-checks' }, 'Service checks'),
      h('div', { id: 'service-checks' }, checkList(serviceChecks)),
      h('h2', { class: 'section' }, 'Node checks'),
      h('div', { id: 'node-checks' }, checkList(nodeChecks)),
      h('h2', { class: 'section' }, 'Metadata'),
      metaList(svc.Meta));
  });
  watch(`/v1/health/service/${encodeURIComponent(name)}`, { signal: ctx.signal, onData: show.data, onError: show.error });
}
