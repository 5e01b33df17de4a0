#!/usr/bin/env node
// Builds the native addon from source: `cargo build` of the workspace crate `consul-rs-node`
// (bindings/node), then copies the library next to this package as
// `consul-rs.<platform>-<arch>-<libc>.node`, where native.cjs loads it.
//
// npm runs this as the package's `install` script, so `npm install ./node` (from the
// repository) and `npm install` (inside node/) both build on a machine with no prebuilt binary.
// It needs nothing from npm: linked local packages do not get their devDependencies installed.
//
// Environment:
//   CARGO_TARGET_DIR        where cargo builds (default: the workspace's target/, shared with
//                           `cargo test`, so the core is compiled once)
//   CONSUL_RS_NODE_PROFILE  cargo profile (default `dev`; `--release` on the command line or
//                           `release` here for an optimised build)
//   CARGO                   the cargo binary (default: `cargo` on PATH, else ~/.cargo/bin/cargo)
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');
const repo = path.resolve(pkgDir, '..');
const manifest = path.join(repo, 'bindings', 'node', 'Cargo.toml');

function fail(msg) {
  console.error(`consul-rs: ${msg}`);
  process.exit(1);
}

function triple() {
  const report = process.report && typeof process.report.getReport === 'function' ? process.report.getReport() : null;
  const libc = process.platform === 'linux' ? (report && report.header.glibcVersionRuntime ? '-gnu' : '-musl') : '';
  return `${process.platform}-${process.arch}${libc}`;
}

function findCargo() {
  if (process.env.CARGO) return process.env.CARGO;
  const onPath = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
  if (!onPath.error && onPath.status === 0) return 'cargo';
  const home = path.join(os.homedir(), '.cargo', 'bin', process.platform === 'win32' ? 'cargo.exe' : 'cargo');
  if (fs.existsSync(home)) return home;
  return fail('cargo not found: install Rust (https://rustup.rs) to build the native addon from source');
}

if (!fs.existsSync(manifest)) {
  fail(`${manifest} not found: this package builds from a consul-rs source checkout (the node/ folder of it)`);
}
const release = process.argv.includes('--release');
const profile = release ? 'release' : process.env.CONSUL_RS_NODE_PROFILE || 'dev';
const env = { ...process.env };
if (!env.CARGO_TARGET_DIR) env.CARGO_TARGET_DIR = path.join(repo, 'target');
const args = [
  'build', '--manifest-path', manifest, '-p', 'consul-rs-node', '--profile', profile,
  '--message-format=json-render-diagnostics',
];
console.error(`consul-rs: building the native addon (cargo, profile ${profile}) ...`);
const out = spawnSync(findCargo(), args, {
  cwd: repo, env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 30, encoding: 'utf8',
});
if (out.error) fail(`cannot run cargo: ${out.error.message}`);
if (out.status !== 0) fail(`cargo build failed (exit ${out.status})`);

let library = null;
for (const line of out.stdout.split('\n')) {
  if (!line.startsWith('{')) continue;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    continue;
  }
  if (msg.reason === 'compiler-artifact' && msg.target && msg.target.kind.includes('cdylib')
      && msg.target.name.replace(/-/g, '_') === 'consul_rs_node') {
    library = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) || library;
  }
}
if (!library) fail('cargo did not report the consul_rs_node library');
const dest = path.join(pkgDir, `consul-rs.${triple()}.node`);
// Copy to a temporary name and rename, so a running process never loads a half-written file.
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(library, tmp);
fs.renameSync(tmp, dest);
console.error(`consul-rs: built ${path.relative(process.cwd(), dest) || dest}`);
