// Shared test helpers: a real `consul-rs agent -dev` process, an embedded Agent, free ports,
// polling, and child Node processes. Everything listens on 127.0.0.1 only.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Agent } from '../index.mjs';

export const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(PKG, '..');
export const ENTRY = path.join(PKG, 'index.mjs');

export function binary() {
  if (process.env.CONSUL_RS_BIN) return process.env.CONSUL_RS_BIN;
  for (const profile of ['debug', 'release']) {
    const candidate = path.join(REPO, 'target', profile, 'consul-rs');
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error('consul-rs binary not found: run `cargo build -p consul-rs` or set CONSUL_RS_BIN');
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` (sync or async) until truthy; false after `timeoutMs`. */
export async function eventually(pred, timeoutMs = 10000, everyMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await pred()) return true;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/**
 * Starts `consul-rs agent -dev` on free ports; resolves to { addr, proc, stop() }.
 * Ports are found by bind-then-release, so another test file may take one first: an agent
 * that exits before answering is started again on fresh ports (up to 3 tries).
 */
export async function startBinaryAgent() {
  for (let attempt = 1; ; attempt++) {
    const agent = await startBinaryAgentOnce();
    if (agent) return agent;
    if (attempt === 3) throw new Error('consul-rs dev agent did not come up');
  }
}

async function startBinaryAgentOnce() {
  const http = await freePort();
  const args = ['agent', '-dev', '-client', '127.0.0.1', '-bind=127.0.0.1', `-http-port=${http}`,
    `-server-port=${await freePort()}`, `-serf-lan-port=${await freePort()}`, `-dns-port=${await freePort()}`,
    '-log-level', 'warn'];
  const proc = spawn(binary(), args, { stdio: ['ignore', 'ignore', 'inherit'] });
  let exited = false;
  proc.once('exit', () => { exited = true; });
  const addr = `127.0.0.1:${http}`;
  const up = await eventually(async () => {
    if (exited) return true;
    const r = await fetch(`http://${addr}/v1/status/leader`);
    const text = await r.text();
    return text.trim() !== '""' && text.trim() !== '';
  }, 30000, 50);
  if (exited) return null;
  if (!up) {
    proc.kill('SIGKILL');
    throw new Error('consul-rs dev agent did not come up');
  }
  return {
    addr,
    proc,
    stop: () => new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    }),
  };
}

/** Both kinds of agent a test file runs against: the binary and an embedded Agent. */
export async function bothAgents() {
  const bin = await startBinaryAgent();
  const embedded = await Agent.start({ nodeName: `node-test-${process.pid}` });
  return {
    kinds: [['binary', bin.addr], ['embedded', embedded.httpAddr]],
    embedded,
    async stop() {
      await embedded.shutdown();
      await bin.stop();
    },
  };
}

let counter = 0;
/** A key prefix / name of this test's own. */
export function unique(base = 't') {
  counter += 1;
  return `${base}-${process.pid}-${counter}-${Math.random().toString(16).slice(2, 6)}`;
}

/** Writes `code` (an ES module importing the package as `consul-rs`) to a temp file. */
export function script(code) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-node-test-'));
  const file = path.join(dir, 'main.mjs');
  fs.writeFileSync(file, code.replaceAll("from 'consul-rs'", `from ${JSON.stringify(ENTRY)}`));
  return { file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Starts a child `node` on an ES module; resolves helpers to read its lines and its exit. */
export function child(code, { env = {} } = {}) {
  const s = script(code);
  const proc = spawn(process.execPath, [s.file], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters = [];
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => {
    stdout += d;
    for (const w of [...waiters]) w();
  });
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      s.cleanup();
      for (const w of [...waiters]) w();
      resolve({ code, signal });
    });
  });
  return {
    proc,
    exited,
    get stdout() { return stdout; },
    get stderr() { return stderr; },
    /** Resolves when stdout has a line equal to (or matching) `what`. */
    line(what, timeoutMs = 30000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const lines = stdout.split('\n');
          const hit = lines.find((l) => (what instanceof RegExp ? what.test(l) : l === what));
          if (hit !== undefined) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            resolve(hit);
          } else if (proc.exitCode !== null || proc.signalCode !== null) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            reject(new Error(`child exited before printing ${what}: ${stdout}\n${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`no ${what} within ${timeoutMs} ms: ${stdout}\n${stderr}`));
        }, timeoutMs);
        waiters.push(check);
        check();
      });
    },
    kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Runs an ES module to completion; resolves to { code, signal, stdout, stderr, ms }. */
export async function run(code, { env = {}, timeoutMs = 60000 } = {}) {
  const started = Date.now();
  const c = child(code, { env });
  const timer = setTimeout(() => c.kill(), timeoutMs);
  const { code: exitCode, signal } = await c.exited;
  clearTimeout(timer);
  return { code: exitCode, signal, stdout: c.stdout, stderr: c.stderr, ms: Date.now() - started };
}

export function hasCommand(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}
