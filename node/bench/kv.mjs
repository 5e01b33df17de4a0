// KV and watch benchmark: the consul-rs package against the npm `consul` package, both talking
// to the same `consul-rs agent -dev` process in the same run.
//
//   cd node/bench && npm install            # the npm `consul` package
//   node kv.mjs [--seconds 5] [--repeats 3]
//
// Environment: CONSUL_RS_BIN (agent binary; default target/release/consul-rs, else debug),
// CONSUL_RS_NODE_ADDON (an addon build to load, e.g. a release build copied to a .node file).
// Closed loop: N concurrent promises, each with one request in flight; keys bench/0..999,
// 128-byte values. Rows are interleaved consul-rs / npm consul; figures are medians over repeats.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const require = createRequire(import.meta.url);
const { Client } = require('..');
const Consul = require('consul');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 5);
const REPEATS = arg('repeats', 3);
const WARMUP_MS = 1000;
const KEYS = 1000;
const VALUE = Buffer.alloc(128, 'v');

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function agentBinary() {
  if (process.env.CONSUL_RS_BIN) return process.env.CONSUL_RS_BIN;
  for (const p of ['release', 'debug']) {
    const f = path.join(repo, 'target', p, 'consul-rs');
    if (fs.existsSync(f)) return f;
  }
  throw new Error('consul-rs binary not found: cargo build --release -p consul-rs');
}

async function startAgent() {
  const http = await freePort();
  const bin = agentBinary();
  const proc = spawn(bin, ['agent', '-dev', '-client', '127.0.0.1', '-bind=127.0.0.1', `-http-port=${http}`,
    `-server-port=${await freePort()}`, `-serf-lan-port=${await freePort()}`, `-dns-port=${await freePort()}`,
    '-log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const addr = `127.0.0.1:${http}`;
  for (let i = 0; i < 300; i += 1) {
    try {
      const r = await fetch(`http://${addr}/v1/status/leader`);
      if ((await r.text()).length > 4) return { addr, proc, bin };
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('agent did not start');
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Runs `op` from `concurrency` closed loops for WARMUP_MS + SECONDS; returns ops/s, p50, p99. */
async function closedLoop(op, concurrency) {
  const lat = [];
  let ops = 0;
  let errors = 0;
  const start = performance.now();
  const measureFrom = start + WARMUP_MS;
  const end = measureFrom + SECONDS * 1000;
  const worker = async () => {
    for (;;) {
      const t = performance.now();
      if (t >= end) return;
      try {
        await op();
      } catch {
        errors += 1;
      }
      const done = performance.now();
      if (t >= measureFrom && done <= end) {
        ops += 1;
        lat.push(done - t);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  lat.sort((a, b) => a - b);
  return { ops: ops / SECONDS, p50: pct(lat, 50), p99: pct(lat, 99), errors };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rnd = () => `bench/${Math.floor(Math.random() * KEYS)}`;

async function main() {
  const agent = await startAgent();
  const [host, port] = agent.addr.split(':');
  const ours = new Client({ address: agent.addr });
  const theirs = new Consul({ host, port: Number(port) });
  for (let i = 0; i < KEYS; i += 1) await ours.kv.put(`bench/${i}`, VALUE);
  const clients = {
    'consul-rs': { put: () => ours.kv.put(rnd(), VALUE), get: () => ours.kv.get(rnd()) },
    'npm consul': { put: () => theirs.kv.set(rnd(), VALUE), get: () => theirs.kv.get(rnd()) },
  };
  const rows = [];
  for (const kind of ['put', 'get']) {
    for (const concurrency of [1, 64]) {
      const results = { 'consul-rs': [], 'npm consul': [] };
      for (let r = 0; r < REPEATS; r += 1) {
        for (const name of Object.keys(clients)) {
          results[name].push(await closedLoop(clients[name][kind], concurrency));
        }
      }
      const row = { scenario: `${kind.toUpperCase()}, ${concurrency} concurrent` };
      for (const [name, rs] of Object.entries(results)) {
        row[name] = {
          ops: median(rs.map((x) => x.ops)),
          p50: median(rs.map((x) => x.p50)),
          p99: median(rs.map((x) => x.p99)),
          errors: rs.reduce((s, x) => s + x.errors, 0),
          range: `${Math.round(Math.min(...rs.map((x) => x.ops)))}–${Math.round(Math.max(...rs.map((x) => x.ops)))}`,
        };
      }
      rows.push(row);
      console.error(`done: ${row.scenario}`);
    }
  }

  // Watch wake latency: time from a put's start to the watch's event, after the watch has
  // settled into its blocking query (250 ms), 50 rounds each.
  const wake = { 'consul-rs': [], 'npm consul': [] };
  const key = 'bench-watch/k';
  const w = ours.watch.key(key);
  await w.next();
  for (let i = 0; i < 50; i += 1) {
    await new Promise((r) => setTimeout(r, 250));
    const t = performance.now();
    const [ev] = await Promise.all([w.next(), ours.kv.put(key, `ours-${i}`)]);
    if (ev.value.value.toString() !== `ours-${i}`) throw new Error('watch saw the wrong value');
    wake['consul-rs'].push(performance.now() - t);
  }
  await w.close();
  const key2 = 'bench-watch/k2';
  await ours.kv.put(key2, 'start');
  const tw = theirs.watch({ method: theirs.kv.get, options: { key: key2 } });
  let resolveChange;
  tw.on('change', (data) => resolveChange && resolveChange(data));
  tw.on('error', () => {});
  await new Promise((r) => { resolveChange = r; });
  for (let i = 0; i < 50; i += 1) {
    await new Promise((r) => setTimeout(r, 250));
    const changed = new Promise((r) => { resolveChange = r; });
    const t = performance.now();
    await Promise.all([changed, ours.kv.put(key2, `theirs-${i}`)]);
    wake['npm consul'].push(performance.now() - t);
  }
  tw.end();

  const cpu = os.cpus();
  console.log(`# consul-rs Node package vs npm consul ${require('consul/package.json').version}`);
  console.log(`# ${new Date().toISOString()}, node ${process.version}, ${cpu.length} × ${cpu[0].model}, agent ${path.relative(repo, agent.bin)}, addon ${process.env.CONSUL_RS_NODE_ADDON ? path.basename(process.env.CONSUL_RS_NODE_ADDON) : 'dev build'}`);
  console.log(`# ${SECONDS} s measured after ${WARMUP_MS} ms warm-up, ${REPEATS} repeats, medians\n`);
  console.log('| scenario | consul-rs ops/s | p50 ms | p99 ms | npm consul ops/s | p50 ms | p99 ms | ops/s ratio | errors (c/n) | ops/s min–max (c; n) |');
  console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of rows) {
    const a = r['consul-rs'];
    const b = r['npm consul'];
    console.log(`| ${r.scenario} | ${Math.round(a.ops)} | ${a.p50.toFixed(2)} | ${a.p99.toFixed(2)} | ${Math.round(b.ops)} | ${b.p50.toFixed(2)} | ${b.p99.toFixed(2)} | ${(a.ops / b.ops).toFixed(2)}× | ${a.errors}/${b.errors} | ${a.range}; ${b.range} |`);
  }
  for (const [name, xs] of Object.entries(wake)) {
    const s = [...xs].sort((x, y) => x - y);
    console.log(`\nwatch wake (${name}): median ${median(s).toFixed(2)} ms, p90 ${pct(s, 90).toFixed(2)} ms, max ${s.at(-1).toFixed(2)} ms over ${s.length} puts`);
  }
  ours.close();
  theirs.destroy?.();
  agent.proc.kill('SIGKILL');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
