// Event-loop hygiene in child processes: closed handles let the process exit by itself, open
// watches and agents keep it alive like a server (unless unref()'d), and exiting with live
// handles is clean (no crash, everything stopped: registrations deregistered, locks released).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { Client } from '../index.mjs';
import { bothAgents, child, eventually, run, sleep, unique } from './helpers.mjs';

const agents = await bothAgents();
after(() => agents.stop());
const addr = agents.kinds[0][1];

function clean(out) {
  assert.equal(out.code, 0, `exit ${out.code} ${out.signal}: ${out.stdout}\n${out.stderr}`);
  assert.equal(out.signal, null);
  assert.equal(out.stderr.trim(), '', out.stderr);
}

describe('process lifetime', () => {
  it('a process that closed everything exits by itself', async () => {
    const out = await run(`
      import { Agent, Client, register, Check } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      // A prefix nothing below writes to: the pending next() must end by close(), not by a change.
      const w = c.watch.keyPrefix('life-idle/');
      await w.next();
      const pending = w.next();
      const sub = c.watch.key('life/k').subscribe(() => {});
      const d = await c.discover('web').ready();
      const lock = await c.lock('life/lock', { lockDelay: 0 });
      const election = c.leaderElection('life/leader');
      await election.waitForLeadership({ timeoutMs: 10000 });
      const reg = await c.register({ name: 'life', check: Check.ttl('10s') });
      const agent = await Agent.start();
      await agent.client().kv.put('x', '1');
      await w.close();
      console.log('pending', await pending);
      await sub.stop();
      await d.close();
      await lock.release();
      await election.resign();
      await reg.close();
      await agent.shutdown();
      console.log('closed');
    `);
    clean(out);
    assert.deepEqual(out.stdout.trim().split('\n'), ['pending null', 'closed']);
    assert.ok(out.ms < 20000, `${out.ms} ms`);
  });

  it('an open watch keeps the process alive; unref() lets it exit', async () => {
    const code = (unref) => `
      import { Client } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      const w = c.watch.key('life/alive-${unref}');
      console.log('first', (await w.next()).value);
      ${unref ? 'w.unref();' : ''}
      // A callback consumer: nothing awaits, so an unref()'d watch lets the process go.
      w.subscribe((err, ev) => console.log('woke', ev && ev.value.value.toString()));
    `;
    const kept = child(code(false));
    try {
      await kept.line('first null');
      await sleep(1500);
      assert.equal(kept.proc.exitCode, null, 'still running while the watch is open');
      await new Client({ address: addr }).kv.put('life/alive-false', 'yes');
      await kept.line('woke yes');
    } finally {
      await kept.kill();
    }
    const out = await run(code(true), { timeoutMs: 20000 });
    clean(out);
    assert.equal(out.stdout.trim(), 'first null');
  });

  it('an awaited next() keeps even an unref()\'d watch alive until it settles (no silent exit 13)', async () => {
    // Issue #23: `await w.next()` at top level on an unref()'d watch used to end the process
    // with exit code 13 (unsettled top-level await) and no output. Like a pending fetch, the
    // pending next() now holds the event loop; once it settles the process exits by itself.
    const key = unique('life/awaited');
    const kept = child(`
      import { Client } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      const w = c.watch.key(${JSON.stringify(key)}).unref();
      console.log('first', (await w.next()).value);
      const ev = await w.next();
      console.log('woke', ev.value.value.toString());
      // The for-await form holds the loop the same way while it waits.
      for await (const e of w) { console.log('again', e.value.value.toString()); break; }
    `);
    try {
      await kept.line('first null');
      await sleep(1500);
      assert.equal(kept.proc.exitCode, null, 'the pending next() keeps the process alive');
      await new Client({ address: addr }).kv.put(key, 'yes');
      await kept.line('woke yes');
      await sleep(500);
      assert.equal(kept.proc.exitCode, null, 'the for-await loop keeps it alive too');
      await new Client({ address: addr }).kv.put(key, 'more');
      await kept.line('again more');
      const { code, signal } = await kept.exited;
      assert.equal(signal, null);
      assert.equal(code, 0, kept.stderr);
    } finally {
      await kept.kill();
    }
  });

  it('close() settles pending next() calls at once: await sub.stop() and await p after close() end cleanly', async () => {
    // The native answer to a pending next() comes through a weak callback, which Node does not
    // wait for once nothing holds the loop: close() settles them in JS instead (exit 13 before).
    const out = await run(`
      import { Client } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      const w = c.watch.key(${JSON.stringify(unique('life/stop'))});
      const sub = w.subscribe(() => {});
      await new Promise((r) => setTimeout(r, 300));
      await sub.stop();
      console.log('stopped');
      const w2 = c.watch.key(${JSON.stringify(unique('life/close'))});
      await w2.next();
      const pending = w2.next();
      await w2.close();
      console.log('closed', await pending);
    `, { timeoutMs: 20000 });
    clean(out);
    assert.equal(out.stdout.trim(), 'stopped\nclosed null');
  });

  it('an awaited waitForLeadership() keeps an unref()\'d election alive until it settles', async () => {
    const key = unique('life/elect');
    const out = await run(`
      import { Client } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      const e = c.leaderElection(${JSON.stringify(key)}).unref();
      console.log('elected', await e.waitForLeadership({ timeoutMs: 15000 }));
      await e.resign();
    `, { timeoutMs: 30000 });
    clean(out);
    assert.equal(out.stdout.trim(), 'elected true');
  });

  it('a running agent keeps the process alive; unref() lets it exit and it is shut down', async () => {
    const code = (unref) => `
      import { Agent } from 'consul-rs';
      const agent = await Agent.start();
      ${unref ? 'agent.unref();' : ''}
      console.log(agent.httpAddr);
    `;
    const kept = child(code(false));
    try {
      const httpAddr = await kept.line(/^127\.0\.0\.1:\d+$/);
      await sleep(1000);
      assert.equal(kept.proc.exitCode, null);
      assert.equal(await (await fetch(`http://${httpAddr}/v1/status/leader`)).text() !== '""', true);
    } finally {
      await kept.kill();
    }
    const out = await run(code(true), { timeoutMs: 20000 });
    clean(out);
    const httpAddr = out.stdout.trim();
    await assert.rejects(fetch(`http://${httpAddr}/v1/status/leader`), 'the agent stopped with the process');
  });

  it('process.exit() with everything live is clean: deregistered, released, stopped', async () => {
    const name = unique('exiting');
    const out = await run(`
      import { Agent, Client, Check } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      const w = c.watch.key('life/exit');
      await w.next();
      w.next().then(() => {});
      c.watch.key('life/exit2').subscribe(() => {});
      await c.discover('web').ready();
      await c.lock('life/exit-lock', { lockDelay: 0 });
      const e = c.leaderElection('life/exit-leader');
      await e.waitForLeadership({ timeoutMs: 10000 });
      await c.register({ name: ${JSON.stringify(name)}, check: Check.ttl('10s') });
      const agent = await Agent.start();
      const ac = agent.client();
      const aw = ac.watch.key('k');
      await aw.next();
      aw.next();
      console.log('exiting');
      process.exit(0);
    `, { timeoutMs: 30000 });
    clean(out);
    assert.equal(out.stdout.trim(), 'exiting');
    const c = new Client({ address: addr });
    assert.equal((await c.agent.services())[name], undefined);
    assert.ok(await eventually(async () => (await c.health.service(name)).length === 0, 5000));
    assert.equal((await c.kv.get('life/exit-lock')).session, null);
    assert.equal((await c.kv.get('life/exit-leader')).session, null);
  });

  it('an uncaught error with live handles exits with code 1, without a native crash', async () => {
    const out = await run(`
      import { Agent, Client } from 'consul-rs';
      const c = new Client({ address: ${JSON.stringify(addr)} });
      const w = c.watch.key('life/crash');
      await w.next();
      w.next();
      await Agent.start();
      throw new Error('app bug');
    `, { timeoutMs: 30000 });
    assert.equal(out.code, 1);
    assert.equal(out.signal, null);
    assert.match(out.stderr, /app bug/);
    assert.doesNotMatch(out.stderr, /FATAL|Check failed|panicked|Segmentation/);
  });
});
