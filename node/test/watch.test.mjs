// Watches over blocking queries (Consul's X-Consul-Index / wait): async iteration, wake-up
// latency after a put, every watch kind, subscribe, close, AbortSignal and disposal.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { Client, Watch } from '../index.mjs';
import { bothAgents, sleep, unique } from './helpers.mjs';

const agents = await bothAgents();
after(() => agents.stop());

for (const [kind, addr] of agents.kinds) {
  describe(`watches against the ${kind} agent`, () => {
    const c = new Client({ address: addr });

    it('a key watch wakes within 100 ms of a put (median of 5)', async (t) => {
      const key = unique('wake');
      const w = c.watch.key(key);
      try {
        const first = await w.next();
        assert.equal(first.value, null);
        const woke = [];
        for (let i = 0; i < 5; i += 1) {
          await sleep(250); // the watch settles into its blocking query
          const t = performance.now();
          const [ev] = await Promise.all([w.next(), c.kv.put(key, `v${i}`)]);
          woke.push(performance.now() - t);
          assert.equal(ev.value.value.toString(), `v${i}`);
          assert.ok(ev.index > first.index);
        }
        woke.sort((a, b) => a - b);
        t.diagnostic(`${kind}: watch woke ${woke.map((x) => x.toFixed(1)).join(', ')} ms after put`);
        assert.ok(woke[2] < 100, `median wake-up ${woke[2]} ms`);
      } finally {
        await w.close();
      }
    });

    it('for await over a prefix; break closes the watch', async () => {
      const p = `${unique('iter')}/`;
      const w = c.watch.keyPrefix(p);
      const seen = [];
      for await (const ev of w) {
        seen.push(ev.value.map((x) => `${x.key.slice(p.length)}=${x.value}`));
        if (seen.length === 1) await c.kv.put(`${p}a`, '1');
        else if (seen.length === 2) await c.kv.put(`${p}b`, '2');
        else break;
      }
      assert.deepEqual(seen, [[], ['a=1'], ['a=1', 'b=2']]);
      assert.equal(w.closed, true);
      assert.equal(await w.next(), null);
    });

    it('close() ends a pending next() with null and ends iteration', async () => {
      const w = c.watch.key(unique('close'));
      await w.next();
      const pending = w.next();
      setTimeout(() => w.close(), 50);
      assert.equal(await pending, null);
      let n = 0;
      for await (const _ of w) n += 1; // eslint-disable-line no-unused-vars
      assert.equal(n, 0);
      await w.close(); // idempotent
    });

    it('an AbortSignal closes the watch; Symbol.asyncDispose too', async () => {
      const ac = new AbortController();
      const w = c.watch.key(unique('abort'), { signal: ac.signal, waitMs: 10000 });
      assert.ok(w instanceof Watch);
      await w.next();
      const pending = w.next();
      ac.abort();
      assert.equal(await pending, null);
      assert.equal(w.closed, true);
      const pre = AbortSignal.abort();
      assert.equal(c.watch.key('k', { signal: pre }).closed, true);
      const d = c.watch.key(unique('dispose'));
      await d[Symbol.asyncDispose]();
      assert.equal(d.closed, true);
    });

    it('subscribe delivers events on the JS thread; stop() closes', async () => {
      const key = unique('sub');
      const w = c.watch.key(key);
      const got = [];
      let wake;
      const sub = w.subscribe(async (err, ev) => {
        assert.equal(err, null);
        got.push(ev.value ? ev.value.value.toString() : null);
        if (wake) wake();
      });
      const until = (n) => new Promise((r) => {
        wake = () => got.length >= n && r();
        wake();
      });
      await until(1);
      await c.kv.put(key, 'a');
      await until(2);
      await sub.stop();
      assert.deepEqual(got, [null, 'a']);
      assert.equal(w.closed, true);
    });

    it('service, checks, services and nodes watches', async () => {
      const name = unique('wsvc');
      const ws = c.watch.service(name);
      const wc = c.watch.checks(name);
      const wss = c.watch.services();
      const wn = c.watch.nodes();
      try {
        assert.deepEqual((await ws.next()).value, []);
        assert.deepEqual((await wc.next()).value, []);
        assert.equal(typeof (await wss.next()).value, 'object');
        assert.ok(Array.isArray((await wn.next()).value));
        await c.catalog.register({
          Node: `n-${name}`, Address: '10.0.0.9', Service: { Service: name, Port: 1 },
          Checks: [{ CheckID: name, Name: 'c', Status: 'passing', ServiceID: name }],
        });
        assert.deepEqual((await ws.next()).value.map((e) => e.service.service), [name]);
        assert.deepEqual((await wc.next()).value.map((x) => x.checkId), [name]);
        for (;;) {
          const ev = await wss.next();
          if (name in ev.value) break;
        }
        for (;;) {
          const ev = await wn.next();
          if (ev.value.some((n) => n.node === `n-${name}`)) break;
        }
      } finally {
        await Promise.all([ws.close(), wc.close(), wss.close(), wn.close()]);
      }
    });

    it('user-event watch (gossip)', async () => {
      const name = unique('wev');
      const w = c.watch.events({ name });
      try {
        await w.next(); // the current (empty) list
        const fired = await c.event.fire(name, 'hi');
        for (;;) {
          const ev = await w.next();
          if (ev.value.some((e) => e.id === fired.id)) break;
        }
      } finally {
        await w.close();
      }
    });
  });
}
