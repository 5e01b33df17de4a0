// The shared validation table (bindings/sdk/tests/validation_cases.json) through the public
// Node API. The Rust SDK, Python and C suites replay the same file: all four accept and refuse
// the same inputs with the same messages, as the one error model — here a ConsulError with code
// INVALID_ARGUMENT (no httpStatus: nothing was sent), a rejection from every Promise-returning
// call and a synchronous throw only from synchronous ones (Check builders, constructors, watch
// and discovery factories). Calls go to an address nothing listens on, so an input that passes
// validation fails with CONNECTION instead.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

import { Check, Client, ConsulError, register } from 'consul-rs';

const require = createRequire(import.meta.url);
const native = require('../native.cjs');
const table = JSON.parse(readFileSync(new URL('../../bindings/sdk/tests/validation_cases.json', import.meta.url), 'utf8'));
const NOWHERE = '127.0.0.1:1';

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

/** The message of a refusal, after checking it is the one error model; null for CONNECTION. */
function refusal(e) {
  assert.ok(e instanceof ConsulError, `not a ConsulError: ${e && e.stack}`);
  if (e.code === 'CONNECTION') return null; // valid: it got as far as the network
  assert.equal(e.code, 'INVALID_ARGUMENT', e.message);
  assert.equal(e.httpStatus, undefined, 'refused locally: no agent answered');
  return e.message;
}

/** Runs a Promise-returning call: it must not throw, only reject. */
async function rejection(f) {
  let p;
  assert.doesNotThrow(() => { p = f(); }, 'a bad value must reject, not throw');
  assert.equal(typeof p?.then, 'function', 'returns a Promise');
  try {
    const r = await p;
    if (r && typeof r.close === 'function') await r.close();
    return 'accepted?!';
  } catch (e) {
    return refusal(e);
  }
}

/** Runs a synchronous call (which may throw the error) followed by an awaited use of its result. */
async function thrownOrRejected(f) {
  try {
    await f();
    return 'accepted?!';
  } catch (e) {
    return refusal(e);
  }
}

function neutral(input, client) {
  return {
    name: input.name,
    id: input.id,
    address: input.address,
    port: input.port,
    tags: input.tags,
    meta: input.meta,
    checks: (input.checks ?? []).map(check),
    client,
  };
}

/** Check builders are synchronous: a bad duration throws there, the same ConsulError. */
function built(input) {
  try {
    return { reg: neutral(input) };
  } catch (e) {
    return { refused: refusal(e) };
  }
}

describe('validation table: registrations', () => {
  const client = new Client({ address: NOWHERE, timeoutMs: 2000 });
  for (const c of table.registrations) {
    it(`${c.case} (Client#register)`, async () => {
      const b = built(c.input);
      const got = b.reg ? await rejection(() => client.register({ ...b.reg, client: undefined })) : b.refused;
      assert.equal(got, c.error);
    });
    it(`${c.case} (register())`, async () => {
      const b = built(c.input);
      const got = b.reg ? await rejection(() => register({ ...b.reg, client })) : b.refused;
      assert.equal(got, c.error);
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

/** The table's neutral calls on the Node API: `promise` calls must reject, never throw. */
function calls(c, a) {
  const reg = neutral(a, c); // Check builders run here, synchronously, as in an application
  return {
    kv_get: { promise: () => c.kv.get(a.key) },
    kv_put: { promise: () => c.kv.put(a.key, a.value) },
    health_state: { promise: () => c.health.state(a.state) },
    lock: { promise: () => c.lock(a.key, { ttl: a.ttl_ms, waitMs: 1000 }) },
    register: { promise: () => register(reg) },
    discover: { sync: async () => { const d = c.discover(a.service); try { await d.ready({ timeoutMs: 1000 }); } finally { await d.close(); } } },
    watch_key: { sync: async () => { const w = c.watch.key(a.key); try { await w.next(); } finally { await w.close(); } } },
    client: { sync: () => new Client({ address: a.address, timeoutMs: 2000 }).kv.get('k') },
  };
}

describe('validation table: calls', () => {
  const client = new Client({ address: NOWHERE, timeoutMs: 2000 });
  for (const c of table.calls) {
    it(c.case, async () => {
      let call;
      try {
        call = calls(client, c.args)[c.call];
      } catch (e) {
        // Building the arguments refused them (a Check builder): the same error, thrown.
        assert.equal(refusal(e), c.error);
        return;
      }
      assert.ok(call, `unknown call ${c.call}`);
      const got = call.promise ? await rejection(call.promise) : await thrownOrRejected(call.sync);
      assert.equal(got, c.error);
    });
  }
});

describe('the error model of issue #23', () => {
  it('register() with a bad value rejects, so .catch() sees it', async () => {
    const client = new Client({ address: NOWHERE });
    const seen = await register({ name: 'web', port: 70000, client }).then(() => null, (e) => e);
    assert.ok(seen instanceof ConsulError);
    assert.equal(seen.code, 'INVALID_ARGUMENT');
    assert.equal(seen.message, 'port: 70000 is out of range 0-65535');
    await assert.rejects(register({ name: 'web', client, token: 'x' }), { code: 'INVALID_ARGUMENT', message: /token/ });
  });

  it('wrong types still throw a TypeError at once, as everywhere in the API', () => {
    const client = new Client({ address: NOWHERE });
    assert.throws(() => register({ name: 'web', port: '8080', client }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => register({ name: 42, client }), TypeError);
    assert.throws(() => client.register({ name: 'web', port: '8080' }), TypeError);
    assert.throws(() => client.kv.get(42), TypeError);
  });

  it('synchronous builders throw the same ConsulError', () => {
    assert.throws(() => Check.ttl('ten seconds'), (e) => e instanceof ConsulError && e.code === 'INVALID_ARGUMENT'
      && e.message === 'ttl: invalid duration "ten seconds": expected a number');
  });
});
