// User events: the agent's recent events, newest first, filterable by name; a form to fire one.

import { request, watch } from '../lib/api.js';
import { h, replace } from '../lib/dom.js';
import { pageHeader, region, loading, errorView, table } from '../lib/view.js';
import { decodeBase64 } from '../lib/format.js';

/** /ui/:dc/events */
export function eventsPage(ctx) {
  document.title = 'Events - Consul-rs';
  const list = loading();
  const nameFilter = h('input', { type: 'search', id: 'event-filter', placeholder: 'Event name', 'aria-label': 'Show only events named' , value: ctx.query.get('name') || '' });
  const fields = {
    name: h('input', { type: 'text', id: 'fire-name', required: true }),
    payload: h('textarea', { id: 'fire-payload', rows: 3 }),
    node: h('input', { type: 'text', id: 'fire-node', placeholder: 'regexp' }),
    service: h('input', { type: 'text', id: 'fire-service', placeholder: 'regexp' }),
    tag: h('input', { type: 'text', id: 'fire-tag', placeholder: 'regexp' }),
  };
  const status = h('div', { 'aria-live': 'polite' });
  const fire = h('form', { id: 'fire-form', class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    const name = fields.name.value.trim();
    if (!name) return;
    try {
      await request(`/v1/event/fire/${encodeURIComponent(name)}`, {
        method: 'PUT', body: fields.payload.value,
        params: { node: fields.node.value.trim() || null, service: fields.service.value.trim() || null, tag: fields.tag.value.trim() || null },
      });
      replace(status, h('p', { class: 'success', id: 'fire-ok' }, `Fired "${name}".`));
    } catch (err) {
      replace(status, errorView(err));
    }
  } },
  h('h2', {}, 'Fire an event'),
  h('label', { for: 'fire-name' }, 'Name'), fields.name,
  h('label', { for: 'fire-payload' }, 'Payload'), fields.payload,
  h('label', { for: 'fire-node' }, 'Node filter'), fields.node,
  h('label', { for: 'fire-service' }, 'Service filter'), fields.service,
  h('label', { for: 'fire-tag' }, 'Tag filter'), fields.tag,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Fire')),
  status);
  replace(ctx.main, pageHeader('Events'),
    h('form', { class: 'toolbar', role: 'search', onsubmit: (e) => { e.preventDefault(); restart(); } }, nameFilter),
    list, h('h2', { class: 'section' }, 'New event'), fire);
  const show = region(list, (events) => {
    if (!events || events.length === 0) return h('p', { class: 'muted', id: 'no-events' }, 'No events.');
    const newest = [...events].reverse();
    return table('Events', ['Name', 'Payload', 'Node filter', 'Service filter', 'Tag filter', 'LTime'],
      newest.map((e) => {
        let payload;
        try {
          payload = e.Payload ? decodeBase64(e.Payload, true) : '';
        } catch {
          payload = `(binary, base64) ${e.Payload}`;
        }
        return { attrs: { 'data-event': e.ID, 'data-name': e.Name }, cells: [e.Name, h('code', {}, payload), e.NodeFilter || '—', e.ServiceFilter || '—', e.TagFilter || '—', String(e.LTime)] };
      }), { id: 'events' });
  });
  let child = null;
  function restart() {
    if (child) child.abort();
    child = new AbortController();
    ctx.signal.addEventListener('abort', () => child.abort(), { once: true });
    watch('/v1/event/list', { params: { name: nameFilter.value.trim() || null }, signal: child.signal, onData: show.data, onError: show.error });
  }
  let timer = null;
  nameFilter.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(restart, 300); });
  restart();
}
