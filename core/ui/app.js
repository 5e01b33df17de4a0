// The console's entry point: the page shell (navigation, theme, login, unreachable banner) and the
// client-side router over Consul's URL scheme.

import { config } from './lib/config.js';
import { reachability, isReachable, setDatacenter, storedToken, clearToken, request } from './lib/api.js';
import { h, replace } from './lib/dom.js';
import { pageUrl } from './lib/view.js';
import { servicesPage, instancesPage, instancePage } from './pages/services.js';
import { nodesPage, nodePage } from './pages/nodes.js';
import { kvFolderPage, kvEditPage, kvCreatePage } from './pages/kv.js';
import { overviewPage } from './pages/overview.js';
import { sessionsPage } from './pages/sessions.js';
import { eventsPage } from './pages/events.js';
import { aclListPage, aclDetailPage, loginDialog } from './pages/acls.js';

const SEG = '([^/]+)';
const KEY = '(.+)';

/** Routes below the content path: a pattern over the encoded path and what it shows. Captures
 * are decoded per segment (KV keys keep their slashes). */
const ROUTES = [
  [`${SEG}/services`, (c, [name]) => servicesPage(c, name)],
  [`${SEG}/services/${SEG}`, (c, [name]) => c.redirect(`services/${enc(name)}/instances`)],
  [`${SEG}/services/${SEG}/instances`, (c, [name]) => instancesPage(c, name)],
  [`${SEG}/services/${SEG}/instances/${SEG}/${SEG}`, (c, [name, node, id]) => c.redirect(`services/${enc(name)}/instances/${enc(node)}/${enc(id)}/health-checks`)],
  [`${SEG}/services/${SEG}/instances/${SEG}/${SEG}/${SEG}`, (c, [name, node, id, tab]) => instancePage(c, name, node, id, tab)],
  [`${SEG}/nodes`, (c) => nodesPage(c)],
  [`${SEG}/nodes/${SEG}`, (c, [node]) => c.redirect(`nodes/${enc(node)}/health-checks`)],
  [`${SEG}/nodes/${SEG}/${SEG}`, (c, [node, tab]) => nodePage(c, node, tab)],
  [`${SEG}/kv/?`, (c) => kvFolderPage(c, '')],
  [`${SEG}/kv/create`, (c) => kvCreatePage(c, '')],
  [`${SEG}/kv/${KEY}/create`, (c, [folder]) => kvCreatePage(c, `${folder}/`)],
  [`${SEG}/kv/${KEY}/edit`, (c, [key]) => kvEditPage(c, key)],
  [`${SEG}/kv/${KEY}/`, (c, [folder]) => kvFolderPage(c, `${folder}/`)],
  [`${SEG}/overview`, (c) => overviewPage(c)],
  [`${SEG}/sessions`, (c) => sessionsPage(c)],
  [`${SEG}/events`, (c) => eventsPage(c)],
  [`${SEG}/acls/?`, (c) => c.redirect('acls/tokens')],
  [`${SEG}/acls/(tokens|policies|roles)`, (c, [kind]) => aclListPage(c, kind)],
  [`${SEG}/acls/(tokens|policies|roles)/${SEG}`, (c, [kind, id]) => aclDetailPage(c, kind, id)],
  [`${SEG}/?`, (c) => c.redirect('services')],
].map(([re, show]) => [new RegExp(`^${re}$`), show]);

function enc(s) {
  return encodeURIComponent(s);
}

function decodeKey(s) {
  return s.split('/').map(decodeURIComponent).join('/');
}

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let controller = null;

const SECTIONS = [
  ['services', 'Services'],
  ['nodes', 'Nodes'],
  ['kv', 'Key/Value'],
  ['sessions', 'Sessions'],
  ['events', 'Events'],
  ['overview', 'Overview'],
];

function renderNav(dc, section) {
  const items = [...SECTIONS];
  if (config.ACLsEnabled) items.push(['acls/tokens', 'Tokens'], ['acls/policies', 'Policies'], ['acls/roles', 'Roles']);
  replace(nav, h('ul', {}, items.map(([path, label]) =>
    h('li', {}, h('a', { href: pageUrl(dc, path), 'aria-current': section === path ? 'page' : null }, label)))));
}

function renderTools() {
  const tools = document.getElementById('tools');
  const theme = document.documentElement.dataset.theme || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
  const themeButton = h('button', {
    type: 'button', class: 'ghost', id: 'theme-toggle', 'aria-pressed': theme === 'dark' ? 'true' : 'false',
    onclick: () => {
      const next = (document.documentElement.dataset.theme || theme) === 'dark' ? 'light' : 'dark';
      document.documentElement.dataset.theme = next;
      localStorage.setItem('consul-rs:theme', next);
      renderTools();
    },
  }, theme === 'dark' ? 'Light theme' : 'Dark theme');
  const token = storedToken();
  let auth = null;
  if (config.ACLsEnabled) {
    auth = token
      ? h('button', { type: 'button', class: 'ghost', id: 'logout', onclick: () => { clearToken(); renderTools(); route(); } }, 'Log out')
      : h('button', { type: 'button', class: 'ghost', id: 'login', onclick: async () => { if (await loginDialog()) { renderTools(); route(); } } }, 'Log in');
  }
  replace(tools, dcPicker, themeButton, auth);
  renderDcPicker();
}

// The datacenter picker: every datacenter the agent knows (/v1/catalog/datacenters, nearest
// first), the page's own selected. Choosing one shows the same section there; the API calls then
// carry ?dc= and the agent forwards them to that datacenter's servers.
const dcPicker = h('select', {
  class: 'dc', id: 'dc-picker', 'aria-label': 'Datacenter', title: 'Datacenter',
  onchange: (ev) => navigate(pageUrl(ev.target.value, currentSection || 'services')),
  // The list has no blocking query in Consul's API: it is re-read when the picker is about to be
  // used rather than on a timer.
  onfocus: () => refreshDcs(),
});
let knownDcs = [config.Datacenter];
let shownDc = config.Datacenter;
let currentSection = 'services';

function renderDcPicker() {
  const dcs = knownDcs.includes(shownDc) ? knownDcs : [shownDc, ...knownDcs];
  replace(dcPicker, dcs.map((dc) => h('option', { value: dc, selected: dc === shownDc }, dc)));
  // On a phone-width screen the picker is shown only when there is a choice to make.
  dcPicker.classList.toggle('multi', dcs.length > 1);
}

/** Re-reads the datacenter list. `dc: undefined` keeps ?dc= off: the local agent answers, so the
 * list stays available while a remote datacenter is unreachable. */
async function refreshDcs() {
  try {
    const { data } = await request('/v1/catalog/datacenters', { params: { dc: undefined } });
    if (Array.isArray(data) && data.length) knownDcs = data;
  } catch {
    // Keep the last list: the unreachable banner already says why.
  }
  renderDcPicker();
}

/** Shows the page for the current location. */
function route(focus = false) {
  if (controller) controller.abort();
  controller = new AbortController();
  const full = location.pathname;
  const base = config.ContentPath;
  const rel = full.startsWith(base) ? full.slice(base.length) : null;
  const ctx = {
    signal: controller.signal,
    main,
    dc: config.Datacenter,
    query: new URLSearchParams(location.search),
    link: (rest) => pageUrl(ctx.dc, rest),
    navigate,
    redirect: (rest) => navigate(pageUrl(ctx.dc, rest), true),
  };
  nav.closest('header').classList.remove('menu-open');
  document.getElementById('menu-toggle').setAttribute('aria-expanded', 'false');
  if (rel === null || rel === '') {
    navigate(pageUrl(config.LocalDatacenter, 'services'), true);
    return;
  }
  for (const [re, show] of ROUTES) {
    const m = re.exec(rel);
    if (!m) continue;
    let args;
    try {
      args = m.slice(1).map((x) => (x === undefined ? x : decodeKey(x)));
    } catch {
      break; // malformed percent-encoding: not a page
    }
    ctx.dc = args.shift();
    setDatacenter(ctx.dc);
    const section = rel.split('/')[1] === 'acls' ? rel.split('/').slice(1, 3).join('/') : rel.split('/')[1] || 'services';
    renderNav(ctx.dc, section);
    shownDc = ctx.dc;
    currentSection = section.startsWith('acls/') ? section : section.split('/')[0];
    renderDcPicker();
    replace(main);
    show(ctx, args);
    if (focus) main.focus();
    return;
  }
  renderNav(config.Datacenter, '');
  document.title = 'Page not found - Consul-rs';
  replace(main, h('div', { class: 'not-found' },
    h('h1', {}, 'Page not found'),
    h('p', {}, 'There is no console page at ', h('code', {}, full), '.'),
    h('p', {}, h('a', { href: pageUrl(config.Datacenter, 'services') }, 'Go to services'))));
  if (focus) main.focus();
}

/** Goes to `url` (a console URL) without reloading. */
function navigate(url, replaceEntry = false) {
  if (replaceEntry) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route(!replaceEntry);
}

document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(config.ContentPath)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
addEventListener('popstate', () => route(true));

document.getElementById('menu-toggle').addEventListener('click', (ev) => {
  const header = nav.closest('header');
  const open = header.classList.toggle('menu-open');
  ev.currentTarget.setAttribute('aria-expanded', open ? 'true' : 'false');
});

const banner = document.getElementById('banner');
reachability.addEventListener('change', () => {
  banner.hidden = isReachable();
});

const savedTheme = localStorage.getItem('consul-rs:theme');
if (savedTheme === 'dark' || savedTheme === 'light') document.documentElement.dataset.theme = savedTheme;
document.querySelector('.brand').setAttribute('href', pageUrl(config.Datacenter, 'services'));
renderTools();
route();
refreshDcs();
