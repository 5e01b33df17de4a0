// The README's Node example, run as written: `npm install ./node`, then agent.mjs (an embedded
// agent on 127.0.0.1:8500 that registers a service and watches a key) and discover.mjs (a second
// process that discovers the service and changes the key).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';

import { PKG, REPO } from './helpers.mjs';

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function section() {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Node\n');
  assert.ok(start >= 0, 'README.md has a "Node" section');
  const end = readme.indexOf('\n## ', start + 1);
  const text = readme.slice(start, end);
  const blocks = [...text.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], code: m[2] }));
  return blocks;
}

it('the README Node example runs as written', { timeout: 600000 }, async (t) => {
  const blocks = section();
  const sh = blocks.filter((b) => b.lang === 'sh');
  const js = blocks.filter((b) => b.lang === 'js');
  assert.equal(js.length, 2, 'agent.mjs and discover.mjs');
  assert.match(sh[0].code, /npm install \.\/node/);
  assert.match(sh[1].code, /node agent\.mjs &/);
  assert.match(sh[1].code, /node discover\.mjs/);
  if (!(await portFree(8500))) {
    t.skip('127.0.0.1:8500 is in use (the example listens there)');
    return;
  }
  // A project directory of its own, with ./node pointing at this package, so the repository
  // root is not turned into an npm project.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-readme-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.symlinkSync(PKG, path.join(dir, 'node'));
  const t0 = Date.now();
  const install = spawnSync('sh', ['-c', sh[0].code], { cwd: dir, encoding: 'utf8', timeout: 580000 });
  t.diagnostic(`npm install ./node took ${Date.now() - t0} ms`);
  assert.equal(install.status, 0, `${install.stdout}\n${install.stderr}`);
  fs.writeFileSync(path.join(dir, 'agent.mjs'), js[0].code);
  fs.writeFileSync(path.join(dir, 'discover.mjs'), js[1].code);

  const env = { ...process.env };
  delete env.CONSUL_HTTP_ADDR;
  const agent = spawn(process.execPath, ['agent.mjs'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  agent.stdout.on('data', (d) => { out += d; });
  agent.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => agent.on('exit', (code, signal) => r({ code, signal })));
  t.after(() => agent.kill('SIGKILL'));
  const deadline = Date.now() + 60000;
  while (!out.includes('registered web')) {
    assert.ok(Date.now() < deadline && agent.exitCode === null, `agent.mjs did not start: ${out}\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(out.trim().split('\n')[0], 'agent on 127.0.0.1:8500, registered web');
  const discover = spawnSync(process.execPath, ['discover.mjs'], { cwd: dir, env, encoding: 'utf8', timeout: 60000 });
  assert.equal(discover.status, 0, discover.stderr);
  assert.equal(discover.stdout.trim(), 'web is at 127.0.0.1:8080');
  let timer;
  const { code } = await Promise.race([exited, new Promise((r) => { timer = setTimeout(() => r({ code: 'timeout' }), 30000); })]);
  clearTimeout(timer);
  assert.equal(code, 0, `agent.mjs: ${out}\n${err}`);
  const lines = out.trim().split('\n');
  assert.equal(lines[1], 'greeting: (unset)');
  assert.equal(lines.at(-1), 'greeting: bye');
});
