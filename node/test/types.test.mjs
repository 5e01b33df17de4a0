// The TypeScript declarations (index.d.ts, index.d.mts) type-check a program using the whole
// public API, from ESM and CommonJS (needs the devDependencies: `npm install` in node/).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';

import { PKG } from './helpers.mjs';

it('the TypeScript declarations type-check a program using the API', { timeout: 120000 }, (t) => {
  const tsc = path.join(PKG, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!fs.existsSync(tsc)) {
    t.skip('typescript is not installed (run `npm install` in node/)');
    return;
  }
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(PKG, 'test', 'types')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
