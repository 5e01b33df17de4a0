// The shared validation table (bindings/sdk/tests/validation_cases.json) through the public
// Node API. The Rust SDK, Python and C suites replay the same file: all four accept and refuse
// the same inputs with the same messages. Registrations go to an address nothing listens on, so
// an input that passes validation fails with CONNECTION instead.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

import { Check, Client, ConsulError } from 'consul-rs';

const require = createRequire(import.meta.url);
const native = require('../native.cjs');
const table = JSON.parse(readFileSync(new URL('../../bindings/sdk/tests/validation_cases.json', import.meta.url), 'utf8'));

/** The table's durations are seconds (numbers) or Go strings; Node's numbers are milliseconds. */
const ms = (v) => (typeof v === 'number' ? v * 1000 : v);

function check(c) {
  const timing = {};
  if ('interval' in c) timing.interval = ms(c.interval);
  if ('timeout' in c) timing.timeout = ms(c.timeout);
  const target = c.target ?? '';
  switch (c.kind) {
    case 'ttl': return Check.ttl(ms(c.ttl));
    case 'http': return Check.http(target, timing);
    case 'tcp': return Check.tcp(target, timing);
    case 'grpc': return Check.grpc(target, timing);
    default: {
      // A kind the builders do not offer: a Check made by hand, refused natively at register().
      const made = Object.create(Check.prototype);
      made._native = () => ({ kind: c.kind, target });
      return made;
    }
  }
}

async function outcome(input) {
  const client = new Client({ address: '127.0.0.1:1', timeoutMs: 2000 });
  try {
    await client.register({
      name: input.name,
      id: input.id,
      address: input.address,
      port: input.port,
      tags: input.tags,
      meta: input.meta,
      checks: (input.checks ?? []).map(check),
    });
    return 'registered?!';
  } catch (e) {
    assert.ok(e instanceof ConsulError, `${e}`);
    if (e.code === 'CONNECTION') return null; // valid: it got as far as the network
    assert.equal(e.code, 'INVALID_ARGUMENT', e.message);
    return e.message;
  }
}

describe('validation table: registrations', () => {
  for (const c of table.registrations) {
    it(c.case, async () => {
      assert.equal(await outcome(c.input), c.error);
    });
  }
});

describe('validation table: options', () => {
  for (const c of table.options) {
    it(c.case, () => {
      let got = null;
      try {
        native.validateOption(c.kind, c.input);
      } catch (e) {
        got = e.message;
      }
      assert.equal(got, c.error);
    });
  }
});
