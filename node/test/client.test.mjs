// Every Client call against both a `consul-rs agent -dev` process and an embedded Agent
// (Consul HTTP API: /v1/kv, /v1/txn, /v1/status, /v1/catalog, /v1/health, /v1/agent,
// /v1/session, /v1/event), plus error mapping and bad-input handling.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Agent, Check, Client, ConsulError, ErrorCodes } from '../index.mjs';
import { bothAgents, eventually, freePort, unique } from './helpers.mjs';

const agents = await bothAgents();
after(() => agents.stop());

for (const [kind, addr] of agents.kinds) {
  describe(`client against the ${kind} agent`, () => {
    let c;
    before(() => {
      c = new Client({ address: addr, timeoutMs: 10000 });
    });

    it('kv: put/get/list/keys/delete with Buffers, strings, flags and cas', async () => {
      const p = `${unique('kv')}/`;
      assert.equal(await c.kv.get(`${p}missing`), null);
      assert.equal(await c.kv.put(`${p}a`, 'hello'), true);
      assert.equal(await c.kv.put(`${p}b`, Buffer.from([0, 255, 1]), { flags: 42 }), true);
      assert.equal(await c.kv.put(`${p}c/d`, new Uint8Array([7])), true);
      const a = await c.kv.get(`${p}a`);
      assert.ok(Buffer.isBuffer(a.value));
      assert.equal(a.value.toString(), 'hello');
      assert.equal(a.key, `${p}a`);
      assert.equal(a.session, null);
      assert.ok(a.createIndex > 0 && a.modifyIndex >= a.createIndex && a.lockIndex === 0);
      const b = await c.kv.get(`${p}b`, { consistent: true });
      assert.deepEqual([...b.value], [0, 255, 1]);
      assert.equal(b.flags, 42);
      assert.equal((await c.kv.get(`${p}b`, { stale: true })).flags, 42);
      assert.equal(await c.kv.put(`${p}empty`, ''), true);
      assert.equal((await c.kv.get(`${p}empty`)).value, null);
      // CAS: 0 = only if absent; the ModifyIndex = only if unchanged.
      assert.equal(await c.kv.put(`${p}a`, 'x', { cas: 0 }), false);
      assert.equal(await c.kv.put(`${p}a`, 'x', { cas: a.modifyIndex }), true);
      assert.equal(await c.kv.put(`${p}a`, 'y', { cas: a.modifyIndex }), false);
      const list = await c.kv.list(p);
      assert.deepEqual(list.map((x) => x.key), [`${p}a`, `${p}b`, `${p}c/d`, `${p}empty`]);
      assert.deepEqual(await c.kv.keys(p, { separator: '/' }), [`${p}a`, `${p}b`, `${p}c/`, `${p}empty`]);
      const now = await c.kv.get(`${p}a`);
      assert.equal(await c.kv.delete(`${p}a`, { cas: now.modifyIndex - 1 }), false);
      assert.equal(await c.kv.delete(`${p}a`, { cas: now.modifyIndex }), true);
      assert.equal(await c.kv.delete(p, { recurse: true }), true);
      assert.deepEqual(await c.kv.list(p), []);
      assert.deepEqual(await c.kv.keys(p), []);
    });

    it('txn: atomic ops with Buffer values, CONFLICT on rollback', async () => {
      const p = `${unique('txn')}/`;
      const ok = await c.txn([
        { KV: { Verb: 'set', Key: `${p}a`, Value: 'one' } },
        { KV: { Verb: 'set', Key: `${p}b`, Value: Buffer.from('two') } },
        { KV: { Verb: 'get', Key: `${p}a` } },
      ]);
      assert.equal(ok.Results.length, 3);
      assert.equal(ok.Results[2].KV.Value.toString(), 'one');
      await assert.rejects(
        c.txn([{ KV: { Verb: 'set', Key: `${p}c`, Value: 'x' } }, { KV: { Verb: 'check-not-exists', Key: `${p}a` } }]),
        (e) => e instanceof ConsulError && e.code === 'CONFLICT' && e.httpStatus === 409,
      );
      assert.equal(await c.kv.get(`${p}c`), null, 'rolled back');
    });

    it('status: leader and peers', async () => {
      const leader = await c.status.leader();
      assert.match(leader, /:\d+$/);
      assert.deepEqual(await c.status.peers(), [leader]);
    });

    it('catalog and health: register, services, nodes, health service/checks/state', async () => {
      const name = unique('cat');
      await c.catalog.register({
        Node: `n-${name}`, Address: '10.1.2.3',
        Service: { Service: name, ID: `${name}-1`, Port: 81, Tags: ['blue'] },
        Checks: [{ CheckID: `${name}-chk`, Name: 'c', Status: 'critical', ServiceID: `${name}-1` }],
      });
      const services = await c.catalog.services();
      assert.deepEqual(services[name], ['blue']);
      assert.ok((await c.catalog.nodes({ consistent: true })).some((n) => n.node === `n-${name}` && n.address === '10.1.2.3'));
      const entries = await c.health.service(name);
      assert.equal(entries.length, 1);
      assert.equal(entries[0].service.port, 81);
      assert.equal(entries[0].node.address, '10.1.2.3');
      assert.equal(entries[0].checks[0].status, 'critical');
      assert.deepEqual(await c.health.service(name, { passing: true }), []);
      assert.equal((await c.health.service(name, { tag: 'blue' })).length, 1);
      assert.equal((await c.health.service(name, { tag: 'green' })).length, 0);
      const checks = await c.health.checks(name);
      assert.deepEqual(checks.map((x) => [x.checkId, x.serviceId, x.status]), [[`${name}-chk`, `${name}-1`, 'critical']]);
      assert.ok((await c.health.state('critical')).some((x) => x.checkId === `${name}-chk`));
      assert.ok(Array.isArray(await c.health.state('any')));
    });

    it('agent: self, services/checks, serviceRegister, TTL check updates, deregister', async () => {
      const self = await c.agent.self();
      assert.equal(typeof self.Config.NodeName, 'string');
      const name = unique('areg');
      await c.agent.serviceRegister({ name, id: `${name}-1`, port: 9, tags: ['t'], meta: { team: 'a' }, check: Check.ttl('30s') });
      const services = await c.agent.services();
      assert.equal(services[`${name}-1`].service, name);
      assert.deepEqual(services[`${name}-1`].meta, { team: 'a' });
      const checkId = `service:${name}-1`;
      assert.equal((await c.agent.checks())[checkId].status, 'critical');
      const status = async () => (await c.health.checks(name))[0]?.status;
      await c.agent.checkPass(checkId, 'fine');
      assert.ok(await eventually(async () => (await status()) === 'passing'));
      assert.equal((await c.agent.checks())[checkId].output, 'fine');
      await c.agent.checkWarn(checkId);
      assert.ok(await eventually(async () => (await status()) === 'warning'));
      await c.agent.checkFail(checkId);
      assert.ok(await eventually(async () => (await status()) === 'critical'));
      await c.agent.serviceDeregister(`${name}-1`);
      assert.equal((await c.agent.services())[`${name}-1`], undefined);
      // Every check kind, with its timing options.
      const timing = { interval: '5s', timeout: 1000, deregisterCriticalAfter: '10m' };
      await c.agent.serviceRegister({
        name, id: `${name}-2`, port: 9,
        checks: [Check.http(`http://${addr}/v1/status/leader`, timing), Check.tcp(addr, timing),
          Check.grpc('127.0.0.1:1/health', timing), Check.ttl(60000)],
      });
      const mine = Object.values(await c.agent.checks()).filter((x) => x.serviceId === `${name}-2`);
      assert.deepEqual(mine.map((x) => x.checkId).sort(), [1, 2, 3, 4].map((i) => `service:${name}-2:${i}`));
      await c.agent.serviceDeregister(`${name}-2`);
      await assert.rejects(c.agent.checkPass('no-such-check'), (e) => e.code === 'NOT_FOUND' && e.httpStatus === 404);
    });

    it('agent: members, join, forceLeave (gossip)', async () => {
      const members = await c.agent.members();
      assert.ok(members.length >= 1);
      assert.ok(members.every((m) => m.statusText === 'alive' || m.statusText === 'left' || m.statusText === 'failed'));
      assert.ok(Array.isArray(await c.agent.members({ wan: true })));
      // A client agent of its own joins this agent's pool, then is forced out.
      const extra = await Agent.start({ nodeName: unique('extra'), server: false });
      try {
        await c.agent.join(extra.serfAddr);
        assert.ok(await eventually(async () => (await c.agent.members()).some((m) => m.name === extra.nodeName && m.statusText === 'alive')));
      } finally {
        await extra.shutdown();
      }
      await c.agent.forceLeave(extra.nodeName, { prune: true });
      await assert.rejects(c.agent.forceLeave(''), (e) => e.code === 'INVALID_ARGUMENT');
    });

    it('session: create, renew, destroy', async () => {
      const id = await c.session.create({ name: 'node-test', ttl: '30s', behavior: 'delete', lockDelay: 0 });
      assert.match(id, /^[0-9a-f-]{36}$/);
      await c.session.renew(id);
      const p = unique('sess');
      assert.equal(await c.kv.put(p, 'held', { acquire: id }), true);
      assert.equal((await c.kv.get(p)).session, id);
      assert.equal(await c.kv.put(p, 'free', { release: id }), true);
      await c.session.destroy(id);
      await assert.rejects(c.session.renew(id), (e) => e.code === 'NOT_FOUND');
    });

    it('event: fire and list (gossip)', async () => {
      const name = unique('ev');
      const fired = await c.event.fire(name, 'payload', {});
      assert.equal(fired.name, name);
      assert.ok(fired.id);
      assert.ok(await eventually(async () => (await c.event.list({ name })).some((e) => e.id === fired.id)));
      const [seen] = (await c.event.list({ name })).filter((e) => e.id === fired.id);
      assert.equal(seen.payload.toString(), 'payload');
    });
  });
}

describe('errors and bad input', () => {
  const addr = agents.kinds[0][1];

  it('an unreachable agent rejects with CONNECTION', async () => {
    const c = new Client({ address: `127.0.0.1:${await freePort()}`, timeoutMs: 2000 });
    await assert.rejects(c.kv.get('k'), (e) => e instanceof ConsulError && e.code === 'CONNECTION' && e.httpStatus === undefined);
  });

  it('wrong argument types throw TypeError naming the argument', (t) => {
    const c = new Client({ address: addr });
    const watch = c.watch.key('k');
    t.after(() => watch.close());
    const cases = [
      [() => new Client({ address: 5 }), 'address'],
      [() => new Client('127.0.0.1:8500'), 'options'],
      [() => new Client({ timeoutMs: '10' }), 'timeoutMs'],
      [() => c.kv.get(5), 'key'],
      [() => c.kv.get('k', { consistent: 'yes' }), 'consistent'],
      [() => c.kv.put('k', 5), 'value'],
      [() => c.kv.put('k', 'v', { cas: '1' }), 'cas'],
      [() => c.kv.delete('k', { recurse: 1 }), 'recurse'],
      [() => c.kv.list(null), 'prefix'],
      [() => c.txn({}), 'ops'],
      [() => c.health.service(undefined), 'name'],
      [() => c.agent.serviceRegister({ name: 'x', port: '80' }), 'port'],
      [() => c.agent.serviceRegister({ name: 'x', tags: 'a' }), 'tags'],
      [() => c.agent.serviceRegister({ name: 'x', check: { kind: 'ttl' } }), 'check'],
      [() => c.register({ name: 'x', meta: { a: 1 } }), 'meta.a'],
      [() => c.watch.key(1), 'key'],
      [() => c.watch.key('k', { signal: {} }), 'signal'],
      [() => c.discover(undefined), 'service'],
      [() => c.lock(3), 'key'],
      [() => watch.subscribe('nope'), 'callback'],
      [() => Check.http(5), 'url'],
      [() => Check.ttl({}), 'ttl'],
    ];
    for (const [f, name] of cases) {
      assert.throws(f, (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE' && e.message.includes(`"${name}"`),
        `expected a TypeError naming ${name}`);
    }
  });

  it('bad values reject (or throw, for synchronous calls) with INVALID_ARGUMENT', async () => {
    const c = new Client({ address: addr });
    const bad = (e) => e instanceof ConsulError && e.code === ErrorCodes.INVALID_ARGUMENT;
    await assert.rejects(c.kv.put('/leading-slash', 'v'), bad);
    await assert.rejects(c.kv.get(''), bad);
    await assert.rejects(c.kv.put('k', 'v', { cas: -1 }), bad);
    await assert.rejects(c.kv.put('k', 'v', { cas: 1.5 }), bad);
    await assert.rejects(c.kv.get('k', { consistent: true, stale: true }), bad);
    await assert.rejects(c.agent.serviceRegister({ name: 'x', port: 70000 }), bad);
    await assert.rejects(c.agent.serviceRegister({ name: '' }), bad);
    await assert.rejects(c.health.state('sideways'), bad);
    await assert.rejects(c.lock('k', { ttl: '1s' }), bad);
    await assert.rejects(c.lock('k', { ttl: 'soon' }), bad);
    await assert.rejects(c.session.create({ ttl: 'never' }), bad);
    assert.throws(() => new Client({ address: '' }), bad);
    assert.throws(() => new Client({ timeoutMs: -1 }), bad);
    assert.throws(() => c.watch.key(''), bad);
    assert.throws(() => c.watch.key('k', { waitMs: -5 }), bad);
    assert.throws(() => c.discover(''), bad);
    assert.throws(() => Check.ttl('0s'), bad);
    assert.throws(() => Check.http(''), bad);
    assert.throws(() => c.discover('x').pick({ strategy: 'fastest' }), bad);
    assert.throws(() => c.discover('x').pick({ strategy: 'consistent_hash' }), bad);
  });

  it('a closed client rejects with SHUTDOWN', async () => {
    const c = new Client({ address: addr });
    c.close();
    await assert.rejects(c.kv.get('k'), (e) => e.code === 'SHUTDOWN');
  });
});
