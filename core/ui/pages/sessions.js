// Sessions: every session with its settings and the locks (KV keys) it holds; destroy.

import { request, watch } from '../lib/api.js';
import { h, replace, confirmDialog } from '../lib/dom.js';
import { pageHeader, region, loading, errorView, encodePath, tagList } from '../lib/view.js';
import { nanos } from '../lib/format.js';

/** /ui/:dc/sessions */
export function sessionsPage(ctx) {
  document.title = 'Sessions - Consul-rs';
  const list = loading();
  const status = h('div', { 'aria-live': 'polite' });
  const lockStatus = h('div', { id: 'locks-status' });
  replace(ctx.main, pageHeader('Sessions'), status, lockStatus, list);
  let sessions = null;
  let locks = [];
  const show = region(list, () => {
    if (sessions.length === 0) return h('p', { class: 'muted', id: 'no-sessions' }, 'No sessions.');
    return h('ul', { class: 'cards', id: 'sessions' }, sessions.map((x) => {
      const held = locks.filter((k) => k.Session === x.ID);
      const checks = [...(x.NodeChecks || []), ...((x.ServiceChecks || []).map((c) => c.ID)), ...(x.Checks || [])];
      return h('li', { class: 'card', 'data-session': x.ID },
        h('h2', {}, x.Name || h('span', { class: 'muted' }, '(unnamed)'), ' ', h('code', {}, x.ID)),
        h('dl', { class: 'meta compact' },
          h('dt', {}, 'Node'), h('dd', {}, h('a', { href: ctx.link(`nodes/${encodeURIComponent(x.Node)}/health-checks`) }, x.Node)),
          h('dt', {}, 'Behavior'), h('dd', {}, x.Behavior),
          h('dt', {}, 'TTL'), h('dd', {}, x.TTL || '—'),
          h('dt', {}, 'Lock delay'), h('dd', {}, nanos(x.LockDelay)),
          h('dt', {}, 'Checks'), h('dd', {}, tagList([...new Set(checks)])),
          h('dt', {}, 'Locks held'), h('dd', { class: 'locks' }, held.length === 0 ? h('span', { class: 'muted' }, 'none')
            : h('ul', { class: 'tags' }, held.map((k) => h('li', {}, h('a', { href: ctx.link(`kv/${encodePath(k.Key)}/edit`) }, k.Key)))))),
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!await confirmDialog('Destroy session', `Destroy session ${x.Name || x.ID}? Its locks are released or deleted (behavior "${x.Behavior}").`, 'Destroy')) return;
          try {
            await request(`/v1/session/destroy/${encodeURIComponent(x.ID)}`, { method: 'PUT' });
            replace(status, h('p', { class: 'success' }, `Destroyed session ${x.ID}.`));
          } catch (e) {
            replace(status, errorView(e));
          }
        } }, 'Destroy')));
    }));
  });
  const redraw = () => { if (sessions) show.data(); };
  watch('/v1/session/list', { signal: ctx.signal, onData: (d) => { sessions = d || []; redraw(); }, onError: show.error });
  // Locks: the KV entries a session holds, selected by the agent (`?filter=` on a recursive KV
  // read is a consul-rs extension) and kept current by a blocking query; none held is a 404.
  watch('/v1/kv/', {
    params: { recurse: true, filter: 'Session != ""' }, signal: ctx.signal, allow404: true,
    onData: (d) => { locks = d || []; replace(lockStatus); redraw(); },
    // Sessions stay listed when the locks can't be read (a token without key read, say).
    onError: (e) => replace(lockStatus, h('p', { class: 'muted' }, 'Locks unavailable: '), errorView(e)),
  });
}
