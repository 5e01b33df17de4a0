// Locks and leader election on sessions (Consul's lock recipe: session + KV acquire/release),
// in one process and between two processes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { Client, ConsulError, Lock } from '../index.mjs';
import { bothAgents, child, sleep, unique } from './helpers.mjs';

const agents = await bothAgents();
after(() => agents.stop());

for (const [kind, addr] of agents.kinds) {
  describe(`locks against the ${kind} agent`, () => {
    const c = new Client({ address: addr });

    it('lock(key, fn) holds the key while fn runs, releases after (also on throw)', async () => {
      const key = unique('lock');
      const out = await c.lock(key, async (lock) => {
        assert.ok(lock instanceof Lock && lock.held && !lock.signal.aborted);
        const pair = await c.kv.get(key);
        assert.equal(pair.session, lock.session);
        assert.equal(pair.value.toString(), 'me');
        return 42;
      }, { value: 'me', lockDelay: 0 });
      assert.equal(out, 42);
      assert.equal((await c.kv.get(key)).session, null);
      await assert.rejects(c.lock(key, async () => { throw new Error('boom'); }, { lockDelay: 0 }), /boom/);
      assert.equal((await c.kv.get(key)).session, null);
    });

    it('a held lock excludes others until released; waitMs gives up with TIMEOUT', async () => {
      const key = unique('excl');
      const held = await c.lock(key, { lockDelay: 0 });
      const t0 = Date.now();
      await assert.rejects(c.lock(key, { waitMs: 300 }), (e) => e instanceof ConsulError && e.code === 'TIMEOUT');
      assert.ok(Date.now() - t0 >= 250);
      const waiting = c.lock(key, { lockDelay: 0 });
      await sleep(200);
      const aborted = new Promise((r) => held.signal.addEventListener('abort', r));
      await held.release();
      await aborted;
      assert.equal(held.held, false);
      const next = await waiting;
      assert.ok(next.held);
      await next.release();
      await next.release(); // idempotent
    });

    it('leader election: one leader at a time, the other takes over on resign', async () => {
      const key = unique('elect');
      const events = [];
      const a = c.leaderElection(key, { value: 'a', onElected: () => events.push('a+'), onLost: () => events.push('a-') });
      assert.equal(await a.waitForLeadership({ timeoutMs: 10000 }), true);
      const b = c.leaderElection(key, { value: 'b' });
      b.on('elected', () => events.push('b+'));
      assert.equal(await b.waitForLeadership({ timeoutMs: 500 }), false);
      assert.ok(a.isLeader && !b.isLeader);
      await a.resign();
      assert.equal(await b.waitForLeadership({ timeoutMs: 30000 }), true);
      assert.equal((await c.kv.get(key)).value.toString(), 'b');
      await b.resign();
      await b.resign();
      assert.deepEqual(events, ['a+', 'b+']);
    });
  });
}

describe('locks between processes', () => {
  it('two processes never hold the lock at once', async () => {
    const addr = agents.kinds[0][1];
    const key = unique('xproc');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-lock-'));
    const log = path.join(dir, 'log');
    const code = (who) => `
      import fs from 'node:fs';
      import { Client } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      console.log('ready');
      for (let i = 0; i < 4; i += 1) {
        await c.lock(${JSON.stringify(key)}, async () => {
          fs.appendFileSync(${JSON.stringify(log)}, '${who}+\\n');
          await new Promise((r) => setTimeout(r, 150));
          fs.appendFileSync(${JSON.stringify(log)}, '${who}-\\n');
        }, { lockDelay: 0 });
      }
      console.log('done');
    `;
    const a = child(code('a'));
    const b = child(code('b'));
    try {
      await Promise.all([a.line('done', 60000), b.line('done', 60000)]);
      const [ea, eb] = await Promise.all([a.exited, b.exited]);
      assert.equal(ea.code, 0, a.stderr);
      assert.equal(eb.code, 0, b.stderr);
      const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
      assert.equal(lines.length, 16);
      for (let i = 0; i < lines.length; i += 2) {
        assert.equal(lines[i][1], '+', `entry ${i} opens: ${lines}`);
        assert.equal(lines[i + 1], `${lines[i][0]}-`, `entry ${i} is closed by the same holder: ${lines}`);
      }
      assert.ok(lines.some((l) => l === 'a+') && lines.some((l) => l === 'b+'));
    } finally {
      await Promise.all([a.kill(), b.kill()]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a lock held by a killed process is freed when its session expires', async () => {
    const addr = agents.kinds[1][1];
    const key = unique('orphan');
    const holder = child(`
      import { Client } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      await c.lock(${JSON.stringify(key)}, { ttl: '10s', lockDelay: 0 });
      console.log('held');
      setInterval(() => {}, 1000);
    `);
    try {
      await holder.line('held');
      await holder.kill('SIGKILL');
      const c = new Client({ address: addr });
      assert.ok((await c.kv.get(key)).session);
      // Consul may keep a TTL session up to twice its TTL.
      const lock = await c.lock(key, { waitMs: 30000, lockDelay: 0 });
      assert.ok(lock.held);
      await lock.release();
    } finally {
      await holder.kill();
    }
  });
});
