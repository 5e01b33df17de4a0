// ACLs: login (token stored like Consul's UI does), tokens, policies and roles.

import { config } from '../lib/config.js';
import { request, watch, storeToken, storedToken } from '../lib/api.js';
import { h, replace, trapFocus } from '../lib/dom.js';
import { pageHeader, region, loading, errorView, table, tagList } from '../lib/view.js';

const KINDS = {
  tokens: { title: 'Tokens', list: '/v1/acl/tokens', one: '/v1/acl/token/', id: (x) => x.AccessorID },
  policies: { title: 'Policies', list: '/v1/acl/policies', one: '/v1/acl/policy/', id: (x) => x.ID },
  roles: { title: 'Roles', list: '/v1/acl/roles', one: '/v1/acl/role/', id: (x) => x.ID },
};

/**
 * Asks for a token in a modal dialog and checks it with /v1/acl/token/self before storing it.
 * Resolves true once logged in, false when cancelled.
 */
export function loginDialog() {
  return new Promise((resolve) => {
    const input = h('input', { type: 'password', id: 'login-token', autocomplete: 'off', required: true, 'aria-describedby': 'login-help' });
    const status = h('div', { 'aria-live': 'assertive' });
    const dlg = h('dialog', { 'aria-labelledby': 'login-title', id: 'login-dialog' });
    let done = false;
    const form = h('form', { onsubmit: async (e) => {
      e.preventDefault();
      const secret = input.value.trim();
      if (!secret) return;
      try {
        const r = await request('/v1/acl/token/self', { token: secret });
        storeToken(r.data.AccessorID, secret);
        done = true;
        dlg.close();
      } catch (err) {
        replace(status, errorView(err));
        input.focus();
      }
    } },
    h('h2', { id: 'login-title' }, 'Log in with an ACL token'),
    h('label', { for: 'login-token' }, 'Secret ID'),
    input,
    h('p', { class: 'muted', id: 'login-help' }, 'The token is kept in this browser (localStorage) and sent with every request.'),
    status,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'ghost', onclick: () => dlg.close() }, 'Cancel'),
      h('button', { type: 'submit', id: 'login-submit' }, 'Log in')));
    dlg.appendChild(form);
    dlg.addEventListener('close', () => { dlg.remove(); resolve(done); });
    trapFocus(dlg);
    document.body.appendChild(dlg);
    dlg.showModal();
    input.focus();
  });
}

function disabled(ctx) {
  replace(ctx.main, pageHeader('Access Controls'), h('p', { class: 'notice', id: 'acls-disabled' }, 'ACLs are disabled on this agent.'));
}

function whoami() {
  const t = storedToken();
  return h('p', { class: 'muted' }, t ? ['Logged in as token ', h('code', {}, t.AccessorID || '(unknown accessor)'), '.'] : 'Not logged in: requests are anonymous.');
}

/** /ui/:dc/acls/(tokens|policies|roles) */
export function aclListPage(ctx, kind) {
  const k = KINDS[kind];
  document.title = `${k.title} - Consul-rs`;
  if (!config.ACLsEnabled) { disabled(ctx); return; }
  const list = loading();
  replace(ctx.main, pageHeader(k.title), whoami(), list);
  const link = (x, label) => h('a', { href: ctx.link(`acls/${kind}/${encodeURIComponent(k.id(x))}`) }, label);
  const names = (xs) => tagList((xs || []).map((p) => p.Name || p.ID));
  const show = region(list, (items) => {
    items = items || [];
    if (kind === 'tokens') {
      return table('Tokens', ['Accessor ID', 'Description', 'Policies', 'Roles', 'Scope'],
        items.map((t) => ({ attrs: { 'data-id': t.AccessorID }, cells: [link(t, t.AccessorID), t.Description || '—', names(t.Policies), names(t.Roles), t.Local ? 'local' : 'global'] })), { id: 'acl-list' });
    }
    if (kind === 'policies') {
      return table('Policies', ['Name', 'Description', 'Datacenters'],
        items.map((p) => ({ attrs: { 'data-id': p.ID }, cells: [link(p, p.Name), p.Description || '—', tagList(p.Datacenters || ['all'])] })), { id: 'acl-list' });
    }
    return table('Roles', ['Name', 'Description', 'Policies'],
      items.map((r) => ({ attrs: { 'data-id': r.ID }, cells: [link(r, r.Name), r.Description || '—', names(r.Policies)] })), { id: 'acl-list' });
  });
  watch(k.list, { signal: ctx.signal, onData: show.data, onError: show.error });
}

/** /ui/:dc/acls/(tokens|policies|roles)/:id */
export function aclDetailPage(ctx, kind, id) {
  const k = KINDS[kind];
  document.title = `${id} - ${k.title} - Consul-rs`;
  if (!config.ACLsEnabled) { disabled(ctx); return; }
  const body = loading();
  replace(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: ctx.link(`acls/${kind}`) }, `All ${kind}`)),
    pageHeader(id), body);
  const show = region(body, (x) => {
    const rows = [];
    for (const [key, value] of Object.entries(x || {})) {
      if (key === 'Rules' || key === 'Hash') continue;
      let shown;
      if (Array.isArray(value)) shown = tagList(value.map((v) => (typeof v === 'object' ? v.Name || v.ID || JSON.stringify(v) : String(v))));
      else if (value && typeof value === 'object') shown = h('code', {}, JSON.stringify(value));
      else shown = String(value);
      rows.push(h('dt', {}, key), h('dd', {}, shown));
    }
    return h('div', { id: 'acl-detail' }, h('dl', { class: 'meta' }, rows),
      x && x.Rules !== undefined ? [h('h2', { class: 'section' }, 'Rules'), h('pre', { class: 'output', id: 'acl-rules' }, x.Rules || '(none)')] : null);
  });
  watch(k.one + encodeURIComponent(id), { signal: ctx.signal, onData: show.data, onError: show.error });
}
