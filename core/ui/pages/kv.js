// Key/Value: folder listing, create, and the editor (text or JSON, flags, check-and-set save,
// delete with confirmation; folders delete recursively).

import { request, watch, apiPath } from '../lib/api.js';
import { h, replace, confirmDialog } from '../lib/dom.js';
import { pageHeader, region, loading, errorView, encodePath } from '../lib/view.js';
import { decodeBase64 } from '../lib/format.js';

/** Breadcrumb links for each folder above `key`. */
function crumbs(ctx, key) {
  const parts = key.split('/').filter((p, i, all) => p !== '' || i < all.length - 1);
  const links = [h('a', { href: ctx.link('kv/') }, 'Key/Value')];
  let acc = '';
  for (let i = 0; i < parts.length - 1; i++) {
    acc += `${parts[i]}/`;
    links.push(' / ', h('a', { href: ctx.link(`kv/${encodePath(acc)}`) }, parts[i]));
  }
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, links);
}

function parentFolder(key) {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? '' : trimmed.slice(0, i + 1);
}

function folderUrl(ctx, folder) {
  return ctx.link(folder ? `kv/${encodePath(folder)}` : 'kv/');
}

async function deleteKey(ctx, key, status) {
  const folder = key.endsWith('/');
  const ok = await confirmDialog(folder ? 'Delete folder' : 'Delete key',
    folder ? `Delete the folder "${key}" and every key under it?` : `Delete the key "${key}"?`, 'Delete');
  if (!ok) return false;
  try {
    await request(apiPath('/v1/kv/', key), { method: 'DELETE', params: { recurse: folder || null } });
    return true;
  } catch (e) {
    replace(status, errorView(e));
    return false;
  }
}

/** /ui/:dc/kv/ and /ui/:dc/kv/<folder>/ */
export function kvFolderPage(ctx, folder) {
  document.title = `${folder || 'Key/Value'} - Consul-rs`;
  const list = loading();
  const status = h('div', { class: 'status' });
  replace(ctx.main,
    folder ? crumbs(ctx, folder) : null,
    pageHeader(folder || 'Key/Value',
      h('a', { class: 'button', href: ctx.link(folder ? `kv/${encodePath(folder)}create` : 'kv/create'), id: 'kv-create' }, 'Create'),
      folder ? h('button', { type: 'button', class: 'danger', id: 'kv-delete-folder', onclick: async () => {
        if (await deleteKey(ctx, folder, status)) ctx.navigate(folderUrl(ctx, parentFolder(folder)));
      } }, 'Delete folder') : null),
    status,
    list);
  const show = region(list, (keys) => {
    if (!keys || keys.length === 0) return h('p', { class: 'muted', id: 'kv-empty' }, 'This folder is empty.');
    const children = keys.filter((k) => k !== folder);
    return h('ul', { class: 'plain', id: 'kv-list' }, children.map((k) => {
      const isFolder = k.endsWith('/');
      const label = k.slice(folder.length);
      return h('li', { 'data-key': k },
        h('span', { 'aria-hidden': 'true' }, isFolder ? '📁 ' : '📄 '),
        h('a', { href: isFolder ? ctx.link(`kv/${encodePath(k)}`) : ctx.link(`kv/${encodePath(k)}/edit`) }, label));
    }));
  });
  watch(apiPath('/v1/kv/', folder), { params: { keys: true, separator: '/' }, signal: ctx.signal, allow404: true, onData: show.data, onError: show.error });
}

/** /ui/:dc/kv/create and /ui/:dc/kv/<folder>/create */
export function kvCreatePage(ctx, folder) {
  document.title = 'Create key - Consul-rs';
  const name = h('input', { type: 'text', id: 'kv-key', name: 'key', required: true, autocomplete: 'off', 'aria-describedby': 'kv-key-help' });
  const value = h('textarea', { id: 'kv-value', name: 'value' });
  const status = h('div', { class: 'status', 'aria-live': 'polite' });
  replace(ctx.main,
    crumbs(ctx, `${folder}x`),
    pageHeader(folder ? `Create in ${folder}` : 'Create key'),
    h('form', { id: 'kv-create-form', onsubmit: async (e) => {
      e.preventDefault();
      const rel = name.value.trim();
      if (!rel) { replace(status, h('p', { class: 'field-error' }, 'A key name is required.')); return; }
      const key = folder + rel;
      const isFolder = key.endsWith('/');
      try {
        const r = await request(apiPath('/v1/kv/', key), { method: 'PUT', params: { cas: 0 }, body: isFolder ? '' : value.value });
        if (r.data !== true) { replace(status, h('p', { class: 'error', role: 'alert' }, `The key "${key}" already exists.`)); return; }
        ctx.navigate(isFolder ? folderUrl(ctx, key) : ctx.link(`kv/${encodePath(key)}/edit`));
      } catch (err) {
        replace(status, errorView(err));
      }
    } },
      h('label', { for: 'kv-key' }, 'Key or folder name'),
      name,
      h('p', { class: 'muted', id: 'kv-key-help' }, 'End the name with / to create a folder.'),
      h('label', { for: 'kv-value' }, 'Value'),
      value,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save'), h('a', { class: 'button ghost', href: folderUrl(ctx, folder) }, 'Cancel')),
      status));
  name.focus();
}

/** /ui/:dc/kv/<key>/edit */
export function kvEditPage(ctx, key) {
  document.title = `${key} - Consul-rs`;
  const body = loading();
  replace(ctx.main, crumbs(ctx, key), pageHeader(key), body);
  const load = async () => {
    try {
      const r = await request(apiPath('/v1/kv/', key), { signal: ctx.signal, allow404: true });
      if (r.data === null) {
        replace(body, h('p', { class: 'error', role: 'alert' }, `The key "${key}" does not exist.`), h('a', { href: folderUrl(ctx, parentFolder(key)) }, 'Back to the folder'));
        return;
      }
      editor(ctx, key, r.data[0], body);
    } catch (e) {
      if (!ctx.signal.aborted) replace(body, errorView(e));
    }
  };
  load();
}

function editor(ctx, key, entry, body) {
  let modifyIndex = entry.ModifyIndex;
  let text;
  let binary = false;
  try {
    text = decodeBase64(entry.Value, true);
  } catch {
    text = entry.Value || '';
    binary = true;
  }
  const value = h('textarea', { id: 'kv-value', name: 'value', spellcheck: 'false', value: text });
  const jsonBox = h('input', { type: 'checkbox', id: 'kv-json' });
  const jsonError = h('p', { class: 'field-error', id: 'kv-json-error', role: 'alert', hidden: true });
  const flags = h('input', { type: 'number', id: 'kv-flags', min: '0', step: '1', value: String(entry.Flags || 0) });
  const status = h('div', { class: 'status', id: 'kv-status', 'aria-live': 'polite' });
  const info = h('p', { class: 'muted', id: 'kv-info' });
  const showInfo = () => replace(info, `ModifyIndex ${modifyIndex} · Session ${entry.Session || 'none'}`);
  showInfo();

  const validate = () => {
    if (!jsonBox.checked) { jsonError.hidden = true; return true; }
    try {
      JSON.parse(value.value);
      jsonError.hidden = true;
      return true;
    } catch (e) {
      jsonError.textContent = `Invalid JSON: ${e.message}`;
      jsonError.hidden = false;
      return false;
    }
  };
  jsonBox.addEventListener('change', () => {
    if (jsonBox.checked && validate()) value.value = JSON.stringify(JSON.parse(value.value), null, 2);
    validate();
  });
  value.addEventListener('input', validate);

  const reload = async () => {
    const r = await request(apiPath('/v1/kv/', key), { allow404: true });
    if (r.data === null) { replace(status, h('p', { class: 'error', role: 'alert' }, 'The key has been deleted.')); return; }
    entry = r.data[0];
    modifyIndex = entry.ModifyIndex;
    value.value = decodeBase64(entry.Value);
    flags.value = String(entry.Flags || 0);
    showInfo();
    validate();
    replace(status, h('p', { class: 'notice' }, 'Reloaded the current value.'));
  };

  const save = async (ev) => {
    ev.preventDefault();
    if (!validate()) return;
    const flagValue = flags.value.trim() === '' ? 0 : Number(flags.value);
    if (!Number.isInteger(flagValue) || flagValue < 0) { replace(status, h('p', { class: 'field-error', role: 'alert' }, 'Flags must be a non-negative integer.')); return; }
    replace(status, h('p', { class: 'muted' }, 'Saving…'));
    try {
      const r = await request(apiPath('/v1/kv/', key), { method: 'PUT', params: { cas: modifyIndex, flags: flagValue }, body: value.value });
      if (r.data === true) {
        const cur = await request(apiPath('/v1/kv/', key), { allow404: true });
        if (cur.data) { entry = cur.data[0]; modifyIndex = entry.ModifyIndex; showInfo(); }
        replace(status, h('p', { class: 'success', id: 'kv-saved' }, 'Saved.'));
        return;
      }
      // Check-and-set failed: someone changed the key since it was loaded.
      const cur = await request(apiPath('/v1/kv/', key), { allow404: true });
      const current = cur.data ? decodeBase64(cur.data[0].Value) : null;
      replace(status, h('div', { class: 'error', role: 'alert', id: 'kv-conflict' },
        h('strong', {}, 'Conflict: this key was changed by someone else since you opened it. Your value was not saved.'),
        current === null ? h('p', {}, 'The key has since been deleted.') : [h('p', {}, 'Current value:'), h('pre', { id: 'kv-current' }, current)],
        h('div', { class: 'actions' }, h('button', { type: 'button', id: 'kv-reload', onclick: reload }, 'Reload the current value'))));
    } catch (e) {
      replace(status, errorView(e));
    }
  };

  replace(body,
    binary ? h('p', { class: 'notice' }, 'This value is not valid base64 text; shown raw.') : null,
    h('form', { id: 'kv-edit-form', onsubmit: save },
      h('label', { for: 'kv-value' }, 'Value'),
      value,
      h('label', { for: 'kv-json', class: 'inline' }, jsonBox, ' Code (JSON)'),
      jsonError,
      h('label', { for: 'kv-flags' }, 'Flags'),
      flags,
      info,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', id: 'kv-save' }, 'Save'),
        h('button', { type: 'button', class: 'danger', id: 'kv-delete', onclick: async () => {
          if (await deleteKey(ctx, key, status)) ctx.navigate(folderUrl(ctx, parentFolder(key)));
        } }, 'Delete'),
        h('a', { class: 'button ghost', href: folderUrl(ctx, parentFolder(key)) }, 'Back')),
      status));
}
