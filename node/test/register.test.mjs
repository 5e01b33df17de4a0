// Self-registration (Consul: /v1/agent/service/register, /v1/agent/check/pass/:id,
// /v1/agent/service/deregister/:id): TTL checks kept passing, deregistration on close(), at
// exit, on SIGINT and SIGTERM; a killed process goes critical and is reaped
// (DeregisterCriticalServiceAfter).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';

import { Check, Client, Registration, register } from '../index.mjs';
import { bothAgents, child, eventually, run, sleep, unique } from './helpers.mjs';

const agents = await bothAgents();
after(() => agents.stop());
const [[, binAddr], [, embAddr]] = agents.kinds;

describe('self-registration', () => {
  it('keeps a TTL check passing and deregisters on close()', async () => {
    const c = new Client({ address: binAddr });
    const name = unique('reg');
    const reg = await c.register({ name, port: 8080, tags: ['v1'], meta: { team: 'a' }, check: Check.ttl('1s') });
    assert.ok(reg instanceof Registration);
    assert.equal(reg.serviceId, name);
    assert.deepEqual(reg.checkIds, [`service:${name}`]);
    assert.ok(await eventually(async () => (await c.health.service(name, { passing: true })).length === 1));
    await sleep(2500); // over two TTLs: only the keep-alive keeps it passing
    const [entry] = await c.health.service(name, { passing: true });
    assert.equal(entry.service.port, 8080);
    assert.deepEqual(entry.service.tags, ['v1']);
    assert.deepEqual(entry.service.meta, { team: 'a' });
    await reg.close();
    await reg.close();
    assert.equal(reg.closed, true);
    // The agent syncs the removal to the catalog right after answering (Consul does the same).
    assert.ok(await eventually(async () => (await c.health.service(name)).length === 0, 5000));
  });

  it('register() uses the agent given, else the one embedded in this process', async () => {
    const saved = process.env.CONSUL_HTTP_ADDR;
    delete process.env.CONSUL_HTTP_ADDR;
    try {
      const name = unique('emb');
      const reg = await register({ name, port: 1, checks: [Check.ttl(5000), Check.tcp(embAddr, { interval: '1s' })] });
      const c = agents.embedded.client();
      assert.deepEqual(reg.checkIds, [`service:${name}:1`, `service:${name}:2`]);
      assert.ok(await eventually(async () => (await c.health.service(name, { passing: true })).length === 1));
      await reg[Symbol.asyncDispose]();
      const other = await register({ name, agent: agents.embedded, check: Check.http(`http://${embAddr}/v1/status/leader`) });
      assert.ok(await eventually(async () => (await c.health.service(name, { passing: true })).length === 1));
      await other.close();
      assert.ok(await eventually(async () => (await c.health.service(name)).length === 0, 10000),
        'deregistered from the catalog');
    } finally {
      if (saved !== undefined) process.env.CONSUL_HTTP_ADDR = saved;
    }
  });

  it('register() goes to the Agent embedded in this process before CONSUL_HTTP_ADDR', async () => {
    const saved = process.env.CONSUL_HTTP_ADDR;
    process.env.CONSUL_HTTP_ADDR = binAddr; // another agent, as most Consul users have it exported
    try {
      const reg = await register({ name: unique('order'), port: 1, check: Check.ttl('10s') });
      try {
        assert.ok(reg.serviceId in await agents.embedded.client().agent.services());
        assert.ok(!(reg.serviceId in await new Client({ address: binAddr }).agent.services()));
      } finally {
        await reg.close();
      }
    } finally {
      if (saved === undefined) delete process.env.CONSUL_HTTP_ADDR;
      else process.env.CONSUL_HTTP_ADDR = saved;
    }
  });

  it('register() with no embedded Agent: CONSUL_HTTP_ADDR, then 127.0.0.1:8500; two Agents need a choice', async () => {
    const defaultFree = await new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(8500, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    const out = await run(`
      import { Agent, Client, register } from 'consul-rs';
      const bin = ${JSON.stringify(binAddr)};
      process.env.CONSUL_HTTP_ADDR = bin;
      const env = await register({ name: 'order-env', port: 2 });
      console.log('env', env.serviceId in await new Client({ address: bin }).agent.services());
      await env.close();
      const one = await Agent.start();
      const two = await Agent.start();
      const refused = register({ name: 'order-two' });
      const e = await refused.catch((err) => err);
      console.log('two', e.code, e.message.includes('pass { agent }'));
      const chosen = await register({ name: 'order-two', agent: two });
      console.log('chosen', chosen.serviceId in await two.client().agent.services());
      await chosen.close();
      await two.shutdown();
      const only = await register({ name: 'order-one' });
      console.log('one', only.serviceId in await one.client().agent.services());
      await only.close();
      await one.shutdown();
      delete process.env.CONSUL_HTTP_ADDR;
      if (${defaultFree}) {
        const d = await register({ name: 'order-default' }).catch((err) => err);
        console.log('default', d.code, d.message.includes('127.0.0.1:8500'));
      }
    `, { timeoutMs: 60000 });
    assert.equal(out.code, 0, out.stdout + out.stderr);
    const want = ['env true', 'two INVALID_ARGUMENT true', 'chosen true', 'one true'];
    if (defaultFree) want.push('default CONNECTION true');
    assert.deepEqual(out.stdout.trim().split('\n'), want);
  });

  it('a process that ends by itself deregisters at exit', async () => {
    const name = unique('exit');
    const out = await run(`
      import { register, Check } from 'consul-rs';
      await register({ name: ${JSON.stringify(name)}, port: 9000, check: Check.ttl('10s') });
      console.log('registered');
    `, { env: { CONSUL_HTTP_ADDR: embAddr } });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout.trim(), 'registered');
    const c = agents.embedded.client();
    assert.ok(await eventually(async () => (await c.health.service(name)).length === 0, 5000));
    assert.equal((await c.agent.services())[name], undefined, 'deregistered from the agent before exit');
  });

  for (const signal of ['SIGTERM', 'SIGINT']) {
    it(`${signal} deregisters, then the process dies of the signal`, async () => {
      const name = unique(signal.toLowerCase());
      const p = child(`
        import { register, Check } from 'consul-rs';
        await register({ name: ${JSON.stringify(name)}, port: 9000, check: Check.ttl('10s') });
        console.log('registered');
        setInterval(() => {}, 1000);
      `, { env: { CONSUL_HTTP_ADDR: binAddr } });
      try {
        await p.line('registered');
        const c = new Client({ address: binAddr });
        // The agent syncs the registration to the catalog right after answering: wait for it.
        assert.ok(await eventually(async () => (await c.health.service(name, { passing: true })).length === 1, 5000));
        p.proc.kill(signal);
        const { signal: died } = await p.exited;
        assert.equal(died, signal);
        assert.equal((await c.agent.services())[name], undefined, 'deregistered from the agent before dying');
        assert.ok(await eventually(async () => (await c.health.service(name)).length === 0, 5000));
      } finally {
        await p.kill();
      }
    });
  }

  it('a killed process goes critical at once and is deregistered after DeregisterCriticalServiceAfter', async (t) => {
    const name = unique('kill');
    const p = child(`
      import { register, Check } from 'consul-rs';
      await register({ name: ${JSON.stringify(name)}, port: 9000, check: Check.ttl('1s', { deregisterCriticalAfter: '1s' }) });
      console.log('registered');
      setInterval(() => {}, 1000);
    `, { env: { CONSUL_HTTP_ADDR: embAddr } });
    try {
      await p.line('registered');
      const c = agents.embedded.client();
      assert.ok(await eventually(async () => (await c.health.service(name, { passing: true })).length === 1));
      await p.kill('SIGKILL');
      const t0 = Date.now();
      assert.ok(await eventually(async () => (await c.health.service(name, { passing: true })).length === 0, 15000));
      // Consul reaps after max(DeregisterCriticalServiceAfter, 1 min), looking every 30 s.
      assert.ok(await eventually(async () => (await c.health.service(name)).length === 0, 100000, 250));
      t.diagnostic(`reaped ${((Date.now() - t0) / 1000).toFixed(1)} s after the kill`);
    } finally {
      await p.kill();
    }
  });
});
