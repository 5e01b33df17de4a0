// The READMEs' Node code, run as written:
//
// - node/README.md: its shell block (`npm pack ./node` in the checkout, `npm install` of the
//   tarball in an application directory under $HOME) from a scratch directory with node/ linked
//   in and HOME pointing into it, then every JavaScript block as a program of that application
//   (ES module, or CommonJS when it uses require), with CONSUL_HTTP_ADDR naming a dev agent. A
//   `// → text` comment is output the program must print, in that order.
// - README.md's "Node" section: the same install from the repository root, then agent.mjs (an
//   embedded agent on 127.0.0.1:8500 that registers a service and watches a key) and
//   discover.mjs (a second process that discovers the service and changes the key).
//
// The build gets CONSUL_RS_NODE_PROFILE from the environment, dev unless set (scripts/test-node.sh
// sets dev), so packing reuses the test run's addon build instead of compiling a release one.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { PKG, REPO, startBinaryAgent } from './helpers.mjs';

/** npm without network chatter (the tarball has no dependencies to fetch), and the addon in the
 * profile this test run built (scripts/test-node.sh: dev) rather than a release build of its own. */
const NPM_ENV = {
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  CONSUL_RS_NODE_PROFILE: process.env.CONSUL_RS_NODE_PROFILE || 'dev',
};

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function fenced(text) {
  return [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```/gm)].map((m) => ({ lang: m[1], code: m[2] }));
}

function triple() {
  const report = process.report.getReport();
  const libc = process.platform === 'linux' ? (report.header.glibcVersionRuntime ? '-gnu' : '-musl') : '';
  return `${process.platform}-${process.arch}${libc}`;
}

/** A scratch "checkout" (node/ linked in, nothing else) to run install instructions from; the
 * caller removes it. */
function scratch() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-readme-'));
  fs.symlinkSync(PKG, path.join(dir, 'node'));
  fs.mkdirSync(path.join(dir, 'home'));
  return dir;
}

function sh(code, cwd, env) {
  const t0 = Date.now();
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', code], {
    cwd, env: { ...process.env, ...NPM_ENV, ...env }, encoding: 'utf8', timeout: 900000, maxBuffer: 1 << 26,
  });
  return { ...r, ms: Date.now() - t0 };
}

/** What a package installed in `dir` looks like: a real directory holding its own addon. */
function assertInstalledCopy(dir) {
  const pkg = path.join(dir, 'node_modules', 'consul-rs');
  assert.ok(!fs.lstatSync(pkg).isSymbolicLink(), `${pkg} is a link into the checkout`);
  const addon = path.join(pkg, `consul-rs.${triple()}.node`);
  assert.ok(fs.statSync(addon).size > 0, `${addon} is missing`);
  assert.ok(!fs.lstatSync(addon).isSymbolicLink());
  assert.ok(!fs.existsSync(path.join(pkg, 'test')), 'tests are not packed');
}

describe('node/README.md', () => {
  const blocks = fenced(fs.readFileSync(path.join(PKG, 'README.md'), 'utf8'));
  let app;
  let bin;
  let dir;

  before(async () => {
    bin = await startBinaryAgent();
    dir = scratch();
  });
  after(async () => {
    if (bin) await bin.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('has only shell and JavaScript blocks, one shell block (the install)', () => {
    assert.deepEqual([...new Set(blocks.map((b) => b.lang))].sort(), ['js', 'sh']);
    assert.equal(blocks.filter((b) => b.lang === 'sh').length, 1);
  });

  it('installs as written: npm pack in the checkout, the tarball in an application', { timeout: 900000 }, (t) => {
    const install = blocks.find((b) => b.lang === 'sh').code;
    assert.match(install, /npm pack \.\/node/);
    // HOME moves (the block installs under ~), rustup's and cargo's homes stay where they are.
    const r = sh(install, dir, {
      HOME: path.join(dir, 'home'),
      RUSTUP_HOME: process.env.RUSTUP_HOME || path.join(os.homedir(), '.rustup'),
      CARGO_HOME: process.env.CARGO_HOME || path.join(os.homedir(), '.cargo'),
    });
    t.diagnostic(`install block: ${r.ms} ms`);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.ok(fs.existsSync(path.join(dir, 'consul-rs-0.1.0.tgz')), 'npm pack made the tarball in the checkout');
    app = path.join(dir, 'home', 'my-app');
    assertInstalledCopy(app);
    // Moving the checkout cannot break it: the application resolves everything inside itself.
    const resolved = spawnSync(process.execPath, ['-p', "require.resolve('consul-rs')"], { cwd: app, encoding: 'utf8' });
    assert.equal(resolved.stdout.trim(), path.join(app, 'node_modules', 'consul-rs', 'index.js'));
  });

  const programs = blocks.filter((b) => b.lang === 'js');
  for (const [i, block] of programs.entries()) {
    const title = block.code.split('\n').find((l) => l.startsWith('import') || l.startsWith('const')) || `block ${i}`;
    it(`program ${i + 1}/${programs.length} runs: ${title}`, { timeout: 120000 }, (t) => {
      if (!app) {
        t.skip('the install block failed');
        return;
      }
      const cjs = /require\('consul-rs'\)/.test(block.code);
      const file = path.join(app, `readme-${i + 1}.${cjs ? 'cjs' : 'mjs'}`);
      fs.writeFileSync(file, block.code);
      const r = spawnSync(process.execPath, [file], {
        cwd: app, encoding: 'utf8', timeout: 110000, env: { ...process.env, CONSUL_HTTP_ADDR: bin.addr },
      });
      assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stdout}\n${r.stderr}`);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      // Each `// → text` comment, in order, is output the program printed.
      let rest = r.stdout;
      for (const m of block.code.matchAll(/\/\/ → (.*)$/gm)) {
        const want = m[1].replace(/ \(.*\)$/, '').trim();
        const at = rest.indexOf(want);
        assert.ok(at >= 0, `output lacks ${JSON.stringify(want)} (in order):\n${r.stdout}\n${r.stderr}`);
        rest = rest.slice(at + want.length);
      }
    });
  }

});

function rootSection() {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Node\n');
  assert.ok(start >= 0, 'README.md has a "Node" section');
  const end = readme.indexOf('\n## ', start + 1);
  return fenced(readme.slice(start, end));
}

it('the README Node example runs as written', { timeout: 900000 }, async (t) => {
  const blocks = rootSection();
  const shBlocks = blocks.filter((b) => b.lang === 'sh');
  const js = blocks.filter((b) => b.lang === 'js');
  assert.equal(js.length, 2, 'agent.mjs and discover.mjs');
  assert.match(shBlocks[0].code, /npm pack \.\/node/);
  assert.match(shBlocks[1].code, /node agent\.mjs &/);
  assert.match(shBlocks[1].code, /node discover\.mjs/);
  if (!(await portFree(8500))) {
    t.skip('127.0.0.1:8500 is in use (the example listens there)');
    return;
  }
  // The repository root as the README has it, with only node/ in it, so the real root is not
  // turned into an npm project.
  const dir = scratch();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const install = sh(shBlocks[0].code, dir, {});
  t.diagnostic(`install block: ${install.ms} ms`);
  assert.equal(install.status, 0, `${install.stdout}\n${install.stderr}`);
  assertInstalledCopy(dir);
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
