// Client-side discovery over /v1/health/service?passing following check flips, with local
// selection strategies; instances registered with /v1/catalog/register so checks flip directly.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { Client, Discovery } from '../index.mjs';
import { bothAgents, eventually, unique } from './helpers.mjs';

const agents = await bothAgents();
after(() => agents.stop());

function register(c, name, node, status, weight = 1) {
  return c.catalog.register({
    Node: node, Address: `10.9.0.${node.slice(-1)}`,
    Service: { Service: name, ID: name, Port: 80, Weights: { Passing: weight, Warning: 1 } },
    Checks: [{ CheckID: `${name}-${node}`, Name: 'c', Status: status, ServiceID: name }],
  });
}

const count = (xs) => xs.reduce((m, x) => ({ ...m, [x]: (m[x] || 0) + 1 }), {});

for (const [kind, addr] of agents.kinds) {
  describe(`discovery against the ${kind} agent`, () => {
    const c = new Client({ address: addr });

    it('follows a check flip and picks by strategy', async (t) => {
      const name = unique('disc');
      const nodes = ['dn0', 'dn1', 'dn2'].map((n) => `${name}-${n}`);
      for (const [i, n] of nodes.entries()) await register(c, name, n, 'passing', 1 + i);
      const d = c.discover(name);
      try {
        assert.ok(d instanceof Discovery);
        assert.equal(await d.ready({ timeoutMs: 5000 }), d);
        assert.ok(await eventually(() => d.instances.length === 3));
        assert.ok(d.index > 0);
        const rr = count(Array.from({ length: 30 }, () => d.pick().node.node));
        assert.deepEqual(Object.values(rr), [10, 10, 10]);
        assert.equal(new Set(Array.from({ length: 100 }, () => d.pick({ strategy: 'random' }).node.node)).size, 3);
        const weighted = count(Array.from({ length: 600 }, () => d.pick({ strategy: 'weighted' }).node.node));
        assert.ok(weighted[nodes[2]] > weighted[nodes[0]]);
        const owner = d.pick({ strategy: 'consistentHash', key: 'user-42' }).node.node;
        for (let i = 0; i < 10; i += 1) assert.equal(d.pick({ strategy: 'consistent_hash', key: 'user-42' }).node.node, owner);
        assert.ok(d.pick({ strategy: 'nearest' }));
        // A check goes critical: the instance leaves the set; the consistent-hash owner of a key
        // on another instance stays put. Then it passes again and comes back.
        const victim = nodes.find((n) => n !== owner);
        const t0 = performance.now();
        await register(c, name, victim, 'critical');
        assert.ok(await eventually(() => !d.instances.some((e) => e.node.node === victim), 5000, 5));
        t.diagnostic(`${kind}: discovery updated ${(performance.now() - t0).toFixed(1)} ms after the check flipped`);
        assert.equal(d.pick({ strategy: 'consistent_hash', key: 'user-42' }).node.node, owner);
        await register(c, name, victim, 'passing');
        assert.ok(await eventually(() => d.instances.length === 3));
      } finally {
        await d.close();
      }
    });

    it('least_latency follows reports; failing instances are ejected (beyond Consul)', async () => {
      const name = unique('lat');
      const nodes = ['ln0', 'ln1', 'ln2'].map((n) => `${name}-${n}`);
      for (const n of nodes) await register(c, name, n, 'passing');
      const d = await c.discover(name).ready({ timeoutMs: 5000 });
      try {
        assert.ok(await eventually(() => d.instances.length === 3));
        const latency = { [nodes[0]]: 2, [nodes[1]]: 20, [nodes[2]]: 40 };
        for (let i = 0; i < 300; i += 1) {
          const e = d.pick({ strategy: 'leastLatency' });
          d.report(e, { latencyMs: latency[e.node.node] });
        }
        const picks = count(Array.from({ length: 1000 }, () => {
          const e = d.pick({ strategy: 'least_latency' });
          d.report(e, { latencyMs: latency[e.node.node] });
          return e.node.node;
        }));
        assert.ok(picks[nodes[0]] >= 800, JSON.stringify(picks));
        // call(): awaits the function, reports its time; a rejection is a failed call.
        assert.equal(await d.call(async (e) => e.node.node.startsWith(name)), true);
        await assert.rejects(d.call(async () => { throw new Error('boom'); }), /boom/);
        d.configureBalancer({ consecutiveFailures: 3, baseEjectionMs: 60000, maxEjectedShare: 0.5 });
        assert.throws(() => d.configureBalancer({ maxEjectedShare: 2 }), (e) => e.code === 'INVALID_ARGUMENT' && /max_ejected_share/.test(e.message));
        const victim = d.instances.find((e) => e.node.node === nodes[1]);
        for (let i = 0; i < 3; i += 1) d.report(victim, { latencyMs: 1, ok: false });
        assert.equal(d.isEjected(victim), true);
        for (let i = 0; i < 30; i += 1) assert.notEqual(d.pick().node.node, nodes[1]);
        // The share cap keeps a second failing instance in.
        const other = d.instances.find((e) => e.node.node === nodes[2]);
        for (let i = 0; i < 3; i += 1) d.report(other, { latencyMs: 1, ok: false });
        assert.equal(d.isEjected(other), false);
        assert.throws(() => d.report(victim, { latencyMs: -1 }), (e) => e.code === 'INVALID_ARGUMENT' && /latencyMs/.test(e.message));
        assert.throws(() => d.report(victim, {}), (e) => e.code === 'INVALID_ARGUMENT');
        assert.throws(() => d.report('x', { latencyMs: 1 }), TypeError);
      } finally {
        await d.close();
      }
    });

    it('locality picks the zone, then spills over to the region (issue #20)', async () => {
      const name = unique('loc');
      const at = (node, status, Region, Zone) => c.catalog.register({
        Node: `${name}-${node}`, Address: '10.9.1.1',
        Service: { Service: name, ID: name, Port: 80, Locality: { Region, Zone } },
        Checks: [{ CheckID: `${name}-${node}`, Name: 'c', Status: status, ServiceID: name }],
      });
      await at('zn1', 'passing', 'eu', 'eu-a');
      await at('rn2', 'passing', 'eu', 'eu-b');
      await at('on3', 'passing', 'us', 'us-a');
      const d = await c.discover(name).ready({ timeoutMs: 5000 });
      try {
        assert.ok(await eventually(() => d.instances.length === 3));
        assert.deepEqual(d.instances.find((e) => e.node.node === `${name}-on3`).service.locality, { region: 'us', zone: 'us-a' });
        d.setLocalityPolicy({ locality: { region: 'eu', zone: 'eu-a' }, regionStrategy: 'consistentHash' });
        assert.deepEqual(d.callerLocality, { region: 'eu', zone: 'eu-a' });
        const picks = (o) => new Set(Array.from({ length: 20 }, () => d.pick({ strategy: 'locality', ...o }).node.node));
        assert.deepEqual(picks(), new Set([`${name}-zn1`]));
        await at('zn1', 'critical', 'eu', 'eu-a');
        assert.ok(await eventually(() => d.instances.length === 2));
        assert.deepEqual(picks({ key: 'k' }), new Set([`${name}-rn2`]));
        await at('rn2', 'critical', 'eu', 'eu-b');
        assert.ok(await eventually(() => d.instances.length === 1));
        assert.deepEqual(picks({ key: 'k' }), new Set([`${name}-on3`]));
        assert.throws(() => d.setLocalityPolicy({ minHealthy: 0 }), (e) => e.code === 'INVALID_ARGUMENT' && /min_healthy/.test(e.message));
        assert.throws(() => d.setLocalityPolicy({ zoneStrategy: 'locality' }), (e) => e.code === 'INVALID_ARGUMENT' && /zone/.test(e.message));
        assert.throws(() => d.setLocalityPolicy({ otherStrategy: 'closest' }), (e) => e.code === 'INVALID_ARGUMENT');
        assert.throws(() => d.setLocalityPolicy({ locality: 'eu' }), TypeError);
      } finally {
        await d.close();
      }
    });

    it('an unknown service picks null; tags filter', async () => {
      const d = await c.discover(unique('none')).ready();
      assert.equal(d.pick(), null);
      assert.deepEqual(d.instances, []);
      d.close();
      const name = unique('tagged');
      await c.catalog.register({ Node: `n-${name}`, Address: '10.7.0.1', Service: { Service: name, Port: 1, Tags: ['blue'] } });
      const blue = await c.discover(name, { tag: 'blue' }).ready();
      const green = await c.discover(name, { tag: 'green' }).ready();
      assert.ok(await eventually(() => blue.instances.length === 1));
      assert.equal(green.pick(), null);
      blue.close();
      green[Symbol.dispose]();
    });
  });
}
