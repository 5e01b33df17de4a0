// The embedded Agent: options, lifecycle, a 3-server cluster in one process surviving the loss
// of its leader (Raft leader election), gossip membership, client agents, and both module
// systems.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import * as esm from '../index.mjs';
import consulDefault, { Agent, Client, ConsulError } from '../index.mjs';
import { eventually, freePort, sleep } from './helpers.mjs';

describe('embedded agent', () => {
  it('starts with options, serves, and shuts down idempotently', async () => {
    const http = await freePort();
    const agent = await Agent.start({ nodeName: 'opts-node', datacenter: 'dc7', ports: { http } });
    try {
      assert.equal(agent.httpAddr, `127.0.0.1:${http}`);
      assert.match(agent.serfAddr, /^127\.0\.0\.1:\d+$/);
      assert.match(agent.dnsAddr, /^127\.0\.0\.1:\d+$/);
      assert.equal(agent.nodeName, 'opts-node');
      assert.equal(agent.running, true);
      const c = agent.client({ timeoutMs: 5000 });
      assert.equal(c.address, `http://127.0.0.1:${http}`);
      assert.equal(await c.kv.put('k', 'v'), true);
      const self = await c.agent.self();
      assert.equal(self.Config.Datacenter, 'dc7');
      assert.equal(self.Config.NodeName, 'opts-node');
      await agent.waitForLeader({ timeoutMs: 1000 });
    } finally {
      await agent.shutdown();
    }
    assert.equal(agent.running, false);
    await agent.shutdown();
    await agent[Symbol.asyncDispose]();
    await assert.rejects(agent.members(), (e) => e instanceof ConsulError && e.code === 'SHUTDOWN');
    await assert.rejects(agent.waitForLeader(), (e) => e.code === 'SHUTDOWN');
  });

  it('refuses bad options: TypeError for types, INVALID_ARGUMENT for values', async () => {
    assert.throws(() => Agent.start({ nodeName: 5 }), (e) => e instanceof TypeError && e.message.includes('"nodeName"'));
    assert.throws(() => Agent.start({ ports: { http: '80' } }), (e) => e instanceof TypeError && e.message.includes('"ports.http"'));
    assert.throws(() => Agent.start({ retryJoin: 'a' }), (e) => e instanceof TypeError && e.message.includes('"retryJoin"'));
    assert.throws(() => Agent.start('n1'), (e) => e instanceof TypeError && e.message.includes('"options"'));
    const bad = (e) => e instanceof ConsulError && e.code === 'INVALID_ARGUMENT';
    await assert.rejects(Agent.start({ bindAddr: 'not-an-ip' }), bad);
    await assert.rejects(Agent.start({ ports: { http: 70000 } }), bad);
    await assert.rejects(Agent.start({ raftMultiplier: 0 }), bad);
    await assert.rejects(Agent.start({ nodeName: '' }), bad);
    await assert.rejects(Agent.start({ bootstrapExpect: -1 }), bad);
    // A port in use is a clear error, not a crash.
    const busy = await Agent.start();
    try {
      const port = Number(busy.httpAddr.split(':')[1]);
      await assert.rejects(Agent.start({ ports: { http: port } }), (e) => e instanceof ConsulError && e.code === 'INVALID_ARGUMENT');
    } finally {
      await busy.shutdown();
    }
  });

  it('three embedded servers form a cluster and survive the loss of their leader', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-cluster-'));
    const firstSerf = await freePort();
    const agents = [];
    try {
      for (let i = 0; i < 3; i += 1) {
        agents.push(await Agent.start({
          nodeName: `js-node${i}`, bootstrapExpect: 3, dataDir: path.join(dir, `n${i}`),
          ports: { serfLan: i === 0 ? firstSerf : 0 },
          retryJoin: i === 0 ? [] : [`127.0.0.1:${firstSerf}`],
        }));
      }
      await Promise.all(agents.map((a) => a.waitForLeader({ timeoutMs: 30000 })));
      const clients = agents.map((a) => a.client({ timeoutMs: 5000 }));
      assert.ok(await eventually(async () => (await clients[0].status.peers()).length === 3, 30000));
      const members = await agents[0].members();
      assert.deepEqual(members.map((m) => m.name).sort(), ['js-node0', 'js-node1', 'js-node2']);
      assert.equal(await clients[1].kv.put('cluster/k', 'before'), true);
      const oldLeader = await clients[0].status.leader();
      let idx = -1;
      for (const [i, c] of clients.entries()) {
        if ((await c.agent.self()).Stats.consul.leader === 'true') idx = i;
      }
      assert.ok(idx >= 0);
      await agents[idx].shutdown();
      const rest = clients.filter((_, i) => i !== idx);
      assert.ok(await eventually(async () => {
        const leader = await rest[0].status.leader();
        return leader && leader !== oldLeader && (await rest[0].kv.put('cluster/k', 'after'));
      }, 30000, 200), 'a new leader within 30 s');
      assert.equal((await rest[1].kv.get('cluster/k', { consistent: true })).value.toString(), 'after');
    } finally {
      await Promise.all(agents.map((a) => a.shutdown()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('join, members and leave between embedded agents', async () => {
    const a = await Agent.start({ nodeName: 'join-a' });
    const b = await Agent.start({ nodeName: 'join-b', server: false }); // a client agent, joined by hand
    try {
      const joined = await b.join([a.serfAddr]);
      assert.equal(joined, 1);
      assert.ok(await eventually(async () => (await a.members()).some((m) => m.name === 'join-b' && m.statusText === 'alive')));
      await b.leave();
      assert.equal(b.running, false);
      assert.ok(await eventually(async () => (await a.members()).some((m) => m.name === 'join-b' && m.statusText === 'left'), 15000));
    } finally {
      await Promise.all([a.shutdown(), b.shutdown()]);
    }
  });

  it('a client agent (server: false) joins the servers through retryJoin', async () => {
    const server = await Agent.start({ nodeName: 'srv-for-client' });
    let client;
    try {
      client = await Agent.start({ nodeName: 'client-agent', server: false, retryJoin: [server.serfAddr] });
      assert.ok(await eventually(async () => (await server.members()).some((m) => m.name === 'client-agent'), 15000));
      const c = client.client({ timeoutMs: 2000 });
      const forwarded = await eventually(async () => c.kv.put('via-client', 'x'), 5000, 200);
      assert.ok(forwarded, 'the client agent forwards KV writes to the server');
      assert.equal((await server.client().kv.get('via-client')).value.toString(), 'x');
    } finally {
      if (client) await client.shutdown();
      await server.shutdown();
    }
  });

  it('require() and import give the same API', async () => {
    const require = createRequire(import.meta.url);
    const cjs = require('..');
    assert.equal(cjs.Client, Client);
    assert.equal(cjs.Agent, esm.Agent);
    assert.equal(consulDefault.Client, Client);
    for (const name of ['Agent', 'Check', 'Client', 'ConsulError', 'Discovery', 'ErrorCodes', 'LeaderElection', 'Lock',
      'Registration', 'Watch', 'register']) {
      assert.ok(cjs[name], name);
      assert.equal(esm[name], cjs[name], name);
    }
    assert.equal(require('../package.json').name, 'consul-rs');
    await sleep(0);
  });
});
