// Shared page pieces: links under the content path, error boxes, status badges, tables.

import { config } from './config.js';
import { ApiError, NetworkError } from './api.js';
import { h, replace } from './dom.js';

/** URL of a console page of datacenter `dc` (`rest` has no leading slash). */
export function pageUrl(dc, rest) {
  return `${config.ContentPath}${encodeURIComponent(dc)}/${rest}`;
}

/** Encodes a KV key (or any slash-separated path) for a URL, keeping its slashes. */
export function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** An error as a box: 403 reads "Permission denied", everything else shows status and body. */
export function errorView(e) {
  if (e instanceof ApiError && e.status === 403) {
    return h('div', { class: 'error', role: 'alert', 'data-error': '403' },
      h('strong', {}, 'Permission denied'),
      h('p', {}, 'Your ACL token does not allow this. Log in with a token that does.'),
      h('pre', {}, e.message));
  }
  if (e instanceof ApiError) {
    return h('div', { class: 'error', role: 'alert', 'data-error': String(e.status) },
      h('strong', {}, `Error ${e.status} ${e.statusText}`),
      h('pre', {}, e.body || '(empty body)'));
  }
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, 'Error'), h('pre', {}, String(e && e.message ? e.message : e)));
}

/**
 * A region that shows a watch's data or its error: `render(data)` draws the data; errors replace
 * the content, except unreachable-agent errors (the banner says so and the last data stays).
 */
export function region(el, render) {
  let hasData = false;
  return {
    data(value, resp) {
      hasData = true;
      replace(el, render(value, resp));
      el.setAttribute('aria-busy', 'false');
    },
    error(e) {
      if (e instanceof NetworkError && hasData) return;
      replace(el, errorView(e));
      el.setAttribute('aria-busy', 'false');
    },
  };
}

/** A coloured badge for a check status. */
export function statusBadge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

/** A list of tags. */
export function tagList(tags) {
  if (!tags || tags.length === 0) return h('span', { class: 'muted' }, '—');
  return h('ul', { class: 'tags' }, tags.map((t) => h('li', {}, t)));
}

/** A definition list of metadata. */
export function metaList(meta) {
  const entries = Object.entries(meta || {});
  if (entries.length === 0) return h('p', { class: 'muted' }, 'No metadata.');
  return h('dl', { class: 'meta' }, entries.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** A table with a header row; `rows` are arrays of cells. */
export function table(caption, headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', r.attrs || {}, r.cells.map((c) => h('td', {}, c)))))));
}

/** A page heading plus optional actions. */
export function pageHeader(title, ...actions) {
  const shown = actions.filter(Boolean);
  return h('div', { class: 'page-header' }, h('h1', {}, title), shown.length ? h('div', { class: 'actions' }, shown) : null);
}

/** An empty, busy region to fill from a watch. */
export function loading() {
  return h('div', { class: 'region', 'aria-busy': 'true', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
}
