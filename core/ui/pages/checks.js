// Health checks as a list: status, name, type, output, notes and the service-quality latency.

import { h } from '../lib/dom.js';
import { statusBadge } from '../lib/view.js';

function checkType(c) {
  return c.Type || (c.CheckID === 'serfHealth' ? 'serf' : '');
}

/** One check as a card (latency and its thresholds only when the check carries them). */
export function checkCard(c) {
  const def = c.Definition || {};
  const latency = c.Latency || null;
  const warn = def.LatencyWarning || null;
  const crit = def.LatencyCritical || null;
  return h('li', { class: `check status-${c.Status}`, 'data-check': c.CheckID, 'data-status': c.Status },
    h('div', { class: 'check-head' },
      statusBadge(c.Status),
      h('strong', { class: 'check-name' }, c.Name || c.CheckID),
      checkType(c) ? h('span', { class: 'muted' }, ` ${checkType(c)}`) : null),
    h('dl', { class: 'meta compact' },
      h('dt', {}, 'Check ID'), h('dd', {}, c.CheckID),
      c.ServiceName ? [h('dt', {}, 'Service'), h('dd', {}, c.ServiceName)] : null,
      c.Notes ? [h('dt', {}, 'Notes'), h('dd', {}, c.Notes)] : null,
      latency || warn || crit ? [h('dt', {}, 'Latency'), h('dd', { class: 'latency' },
        latency || '—',
        warn ? h('span', { class: 'muted' }, ` (warning ≥ ${warn}`) : null,
        crit ? h('span', { class: 'muted' }, `${warn ? ', ' : ' ('}critical ≥ ${crit})`) : (warn ? h('span', { class: 'muted' }, ')') : null))] : null),
    h('details', { open: c.Status !== 'passing' ? true : null },
      h('summary', {}, 'Output'),
      h('pre', { class: 'output' }, c.Output || '(no output)')));
}

/** Checks sorted worst first. */
export function checkList(checks) {
  const order = { critical: 0, warning: 1, passing: 2, maintenance: 0 };
  const sorted = [...(checks || [])].sort((a, b) => (order[a.Status] ?? 3) - (order[b.Status] ?? 3) || (a.Name || '').localeCompare(b.Name || ''));
  if (sorted.length === 0) return h('p', { class: 'muted' }, 'No health checks.');
  return h('ul', { class: 'checks' }, sorted.map(checkCard));
}
