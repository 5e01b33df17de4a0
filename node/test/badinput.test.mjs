// Bad input never aborts the process: every public call fed odd values (wrong types, NaN,
// huge numbers, throwing getters, Proxies, empty strings) throws a TypeError, rejects with a
// ConsulError, or succeeds. Run in a child so an abort would show as a signal, not a lost runner.
import assert from 'node:assert/strict';
import { after, it } from 'node:test';

import { run, startBinaryAgent } from './helpers.mjs';

const bin = await startBinaryAgent();
after(() => bin.stop());

it('odd values to every call give TypeError or ConsulError, never a crash', { timeout: 120000 }, async (t) => {
  const out = await run(`
    import { Agent, Check, Client, ConsulError, register } from 'consul-rs';
    const c = new Client({ address: ${JSON.stringify(bin.addr)}, timeoutMs: 3000 });
    const throwing = { get cas() { throw new Error('getter'); } };
    const odd = [undefined, null, 0, -1, 1.5, NaN, Infinity, 2 ** 64, -0, '', ' ', '/x', 'a'.repeat(5000), '\\u0000',
      true, [], [1], {}, { a: 1 }, throwing, new Proxy({}, { get() { throw new Error('proxy'); } }), () => 1,
      Symbol('s'), 10n, Buffer.alloc(0), new Uint8Array(3), new Map([['a', 1]])];
    const calls = {
      'kv.get': (a, b) => c.kv.get(a, b), 'kv.put': (a, b) => c.kv.put('odd/k', a, b), 'kv.put2': (a) => c.kv.put(a, 'v'),
      'kv.list': (a, b) => c.kv.list(a, b), 'kv.keys': (a, b) => c.kv.keys(a, b), 'kv.delete': (a, b) => c.kv.delete(a, b),
      txn: (a) => c.txn(a), 'txn2': (a) => c.txn([a]), 'health.service': (a, b) => c.health.service(a, b),
      'health.state': (a) => c.health.state(a), 'catalog.register': (a) => c.catalog.register(a),
      'agent.serviceRegister': (a) => c.agent.serviceRegister(a), 'agent.sr2': (a) => c.agent.serviceRegister({ name: 'odd', port: a }),
      'agent.checkPass': (a, b) => c.agent.checkPass(a, b), 'session.create': (a) => c.session.create(a),
      'session.create2': (a) => c.session.create({ ttl: a }), 'event.fire': (a, b) => c.event.fire(a, b),
      'watch.key': (a, b) => c.watch.key(a, b), 'watch.service': (a, b) => c.watch.service('s', b),
      discover: (a, b) => c.discover(a, b), lock: (a, b) => c.lock('odd/lock', { waitMs: 50, ttl: a, lockDelay: b }),
      register: (a) => register(a), 'Check.ttl': (a, b) => Check.ttl(a, b), 'Check.http': (a, b) => Check.http(a, b),
      'new Client': (a) => new Client(a), 'Agent.start': (a) => Agent.start({ ports: { http: a }, bindAddr: '127.0.0.1' }),
    };
    let outcomes = { ok: 0, type: 0, consul: 0 };
    const made = [];
    for (const [name, f] of Object.entries(calls)) {
      for (const a of odd) {
        for (const b of [undefined, a]) {
          try {
            let r = f(a, b);
            if (r && typeof r.then === 'function') r = await r;
            if (r && typeof r.close === 'function') made.push(r);
            if (r && typeof r.shutdown === 'function') made.push(r);
            if (r && typeof r.release === 'function') made.push(r);
            outcomes.ok += 1;
          } catch (e) {
            if (e instanceof TypeError) outcomes.type += 1;
            else if (e instanceof ConsulError) outcomes.consul += 1;
            else if (e instanceof Error && /getter|proxy/.test(e.message)) outcomes.type += 1;
            else { console.log('unexpected', name, String(a), e); process.exitCode = 3; }
          }
        }
      }
    }
    for (const m of made) await (m.shutdown ? m.shutdown() : m.release ? m.release() : m.close());
    console.log(JSON.stringify(outcomes));
  `, { timeoutMs: 110000 });
  assert.equal(out.signal, null, `died of ${out.signal}: ${out.stderr}`);
  assert.equal(out.code, 0, out.stdout + out.stderr);
  const outcomes = JSON.parse(out.stdout.trim().split('\n').at(-1));
  assert.ok(outcomes.type > 0 && outcomes.consul > 0, out.stdout);
  t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
});
