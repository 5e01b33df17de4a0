// Loads the native addon built by scripts/build.js for this platform. If it is missing in a
// source checkout (npm skipped the `prepare` script: `--ignore-scripts`, or a newer npm's script
// approvals), it is built here once; an installed copy carries its addon (npm pack).
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

function triple() {
  const report = process.report && typeof process.report.getReport === 'function' ? process.report.getReport() : null;
  const libc = process.platform === 'linux' ? (report && report.header.glibcVersionRuntime ? '-gnu' : '-musl') : '';
  return `${process.platform}-${process.arch}${libc}`;
}

// CONSUL_RS_NODE_ADDON: load another build of the addon (the benchmark's release build).
const file = process.env.CONSUL_RS_NODE_ADDON || path.join(__dirname, `consul-rs.${triple()}.node`);
const build = path.join(__dirname, 'scripts', 'build.js');

const checkout = fs.existsSync(path.join(__dirname, '..', 'bindings', 'node', 'Cargo.toml'));

if (!fs.existsSync(file) && checkout && fs.existsSync(build) && !process.env.CONSUL_RS_NO_AUTOBUILD) {
  process.stderr.write('consul-rs: the native addon is not built yet (npm skipped the prepare script?); building it now\n');
  const r = spawnSync(process.execPath, [build], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) {
    throw new Error(`consul-rs: building the native addon failed; run \`npm run build\` in ${__dirname} (needs cargo)`);
  }
}

try {
  module.exports = require(file);
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(file)) {
    throw new Error(checkout
      ? `consul-rs: the native addon ${file} is not built; run \`npm run build\` in ${__dirname} (needs cargo)`
      : `consul-rs: this package has no native addon for ${triple()}; make its tarball with \`npm pack ./node\` `
        + 'in a consul-rs checkout on this platform');
  }
  throw e;
}
