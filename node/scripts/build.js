#!/usr/bin/env node
// Builds the native addon from source: `cargo build` of the workspace crate `consul-rs-node`
// (bindings/node), then copies the library into this package's own directory as
// `consul-rs.<platform>-<arch>-<libc>.node`, where native.cjs loads it.
//
// npm runs this as the package's `prepare` script, which it runs for `npm install` inside node/,
// for `npm install <checkout>/node` (linked or `--install-links`) and for `npm pack`, always in
// the checkout. So `npm pack ./node` makes a tarball that carries the built addon: installing
// that tarball anywhere needs no Rust and no checkout, and nothing in it points back at the
// checkout. It needs nothing from npm (linked local packages do not get devDependencies).
//
// Environment:
//   CONSUL_RS_NODE_PROFILE  cargo profile (default `release`; the project's test scripts set `dev`
//                           to share the one dev build of the core with `cargo test`)
//   CARGO_TARGET_DIR        where cargo builds (default: the workspace's target/)
//   CARGO                   the cargo binary (default: `cargo` on PATH, else ~/.cargo/bin/cargo)
// Flags: `--release` / `--dev` force a profile; `--if-missing` builds only when no addon is there.
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
  return fail('cargo not found: install Rust >= 1.85 (https://rustup.rs) to build the native addon from source');
}

/** The cargo profile: a flag, else CONSUL_RS_NODE_PROFILE, else release (what users install). */
function profile(argv) {
  if (argv.includes('--release')) return 'release';
  if (argv.includes('--dev')) return 'dev';
  return process.env.CONSUL_RS_NODE_PROFILE || 'release';
}

const dest = path.join(pkgDir, `consul-rs.${triple()}.node`);
if (!fs.existsSync(manifest)) {
  // An installed copy (from `npm pack`'s tarball): the addon travels inside it.
  if (fs.existsSync(dest)) process.exit(0);
  fail(`no native addon for ${triple()} in ${pkgDir}, and no consul-rs checkout to build one from: `
    + 'make the tarball with `npm pack ./node` in a consul-rs checkout on this platform');
}
if (process.argv.includes('--if-missing') && fs.existsSync(dest)) process.exit(0);

const prof = profile(process.argv);
const env = { ...process.env };
if (!env.CARGO_TARGET_DIR) env.CARGO_TARGET_DIR = path.join(repo, 'target');
const args = [
  'build', '--manifest-path', manifest, '-p', 'consul-rs-node', '--profile', prof,
  '--message-format=json-render-diagnostics',
];
console.error(`consul-rs: building the native addon (cargo, profile ${prof}; a first build compiles the`
  + ' whole Rust core and takes minutes) ...');
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
// A copy, never a link into target/: the package directory holds its own addon, so a tarball
// made from it (npm pack) or a copy of it works wherever it is moved. Copied to a temporary name
// and renamed, so a running process never loads a half-written file.
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(library, tmp);
fs.renameSync(tmp, dest);
console.error(`consul-rs: built ${path.relative(process.cwd(), dest) || dest} (${prof})`);
