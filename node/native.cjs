// Loads the native addon built by scripts/build.js for this platform.
'use strict';

const path = require('node:path');

function triple() {
  const report = process.report && typeof process.report.getReport === 'function' ? process.report.getReport() : null;
  const libc = process.platform === 'linux' ? (report && report.header.glibcVersionRuntime ? '-gnu' : '-musl') : '';
  return `${process.platform}-${process.arch}${libc}`;
}

const file = path.join(__dirname, `consul-rs.${triple()}.node`);
try {
  module.exports = require(file);
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(file)) {
    throw new Error(`consul-rs: the native addon ${file} is not built; run \`npm run build\` in ${__dirname} (needs cargo)`);
  }
  throw e;
}
