// HTTPS: a `consul-rs agent -dev` serving HTTPS only with `verify_incoming`, its certificates
// made by `consul-rs tls ca create` / `tls cert create`; the client's TLS options (CA file or
// directory, client certificate, server name, skipped verification), and clear errors for an
// untrusted CA, a missing client certificate and unusable files.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Agent, Client, ConsulError } from '../index.mjs';
import { binary, eventually, freePort } from './helpers.mjs';

function tls(cwd, ...args) {
  const r = spawnSync(binary(), ['tls', ...args], { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
}

describe('an HTTPS-only agent with verify_incoming', () => {
  let dir;
  let proc;
  let address;
  let files;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-node-https-'));
    tls(dir, 'ca', 'create');
    tls(dir, 'cert', 'create', '-server');
    tls(dir, 'cert', 'create', '-cli');
    fs.mkdirSync(path.join(dir, 'other'));
    tls(path.join(dir, 'other'), 'ca', 'create');
    fs.mkdirSync(path.join(dir, 'cas'));
    fs.copyFileSync(path.join(dir, 'consul-agent-ca.pem'), path.join(dir, 'cas', 'consul-agent-ca.pem'));
    files = {
      caFile: path.join(dir, 'consul-agent-ca.pem'),
      clientCert: path.join(dir, 'dc1-cli-consul-0.pem'),
      clientKey: path.join(dir, 'dc1-cli-consul-0-key.pem'),
    };
    const https = await freePort();
    fs.writeFileSync(path.join(dir, 'agent.json'), JSON.stringify({
      ports: { http: -1, https },
      tls: {
        defaults: {
          ca_file: 'consul-agent-ca.pem',
          cert_file: 'dc1-server-consul-0.pem',
          key_file: 'dc1-server-consul-0-key.pem',
          verify_incoming: true,
        },
      },
    }));
    proc = spawn(binary(), ['agent', '-dev', '-client', '127.0.0.1', '-bind=127.0.0.1',
      `-server-port=${await freePort()}`, `-serf-lan-port=${await freePort()}`, `-dns-port=${await freePort()}`,
      '-log-level', 'warn', `-config-file=${path.join(dir, 'agent.json')}`], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
    address = `https://127.0.0.1:${https}`;
    const c = new Client({ address, ...files, timeoutMs: 2000 });
    assert.ok(await eventually(async () => (await c.status.leader()) !== '', 30000, 100), 'agent up over HTTPS');
  });

  after(async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('talks HTTPS with a CA and a client certificate', async () => {
    const c = new Client({ address, ...files });
    assert.equal(c.address, address);
    assert.equal(await c.kv.put('https/a', 'over tls'), true);
    assert.equal((await c.kv.get('https/a')).value.toString(), 'over tls');
    // A bare host:port with `https: true`, the CA as a directory, and the server name checked
    // instead of the address (the agent's certificate names server.dc1.consul).
    const bare = new Client({
      address: address.replace('https://', ''), https: true, caPath: path.join(dir, 'cas'),
      clientCert: files.clientCert, clientKey: files.clientKey, tlsServerName: 'server.dc1.consul',
    });
    assert.equal(bare.address, address);
    assert.equal((await bare.kv.get('https/a')).value.toString(), 'over tls');
    // Verification off: no CA needed (the client certificate still is).
    const skip = new Client({ address, insecureSkipVerify: true, clientCert: files.clientCert, clientKey: files.clientKey });
    assert.equal((await skip.kv.get('https/a')).value.toString(), 'over tls');
  });

  it('an untrusted CA, a missing client certificate and unusable files are clear errors', async () => {
    const foreign = new Client({ address, ...files, caFile: path.join(dir, 'other', 'consul-agent-ca.pem') });
    await assert.rejects(foreign.kv.get('https/a'), (e) => {
      assert.ok(e instanceof ConsulError);
      assert.equal(e.code, 'CONNECTION');
      assert.match(e.message, /certificate signed by unknown authority/);
      assert.ok(e.message.includes(address), e.message);
      return true;
    });
    const anonymous = new Client({ address, caFile: files.caFile });
    await assert.rejects(anonymous.kv.get('https/a'), (e) => e.code === 'CONNECTION' && /client certificate/.test(e.message));
    const wrongName = new Client({ address, ...files, tlsServerName: 'other.dc1.consul' });
    await assert.rejects(wrongName.kv.get('https/a'), /not valid for name "other.dc1.consul"/);
    const missing = path.join(dir, 'missing.pem');
    assert.throws(() => new Client({ address, caFile: missing }), (e) => {
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.equal(e.message, `Error loading CA File: open ${missing}: no such file or directory`);
      return true;
    });
    assert.throws(() => new Client({ address, clientCert: files.clientCert }),
      /both client cert and client key must be provided/);
    assert.throws(() => new Client({ address, insecureSkipVerify: 'yes' }), TypeError);
  });
});

describe('an embedded agent with tls', () => {
  let dir;
  let serverTls;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-node-embedded-tls-'));
    tls(dir, 'ca', 'create');
    tls(dir, 'cert', 'create', '-server');
    tls(dir, 'cert', 'create', '-cli');
    serverTls = (extra = {}) => ({
      defaults: {
        ca_file: path.join(dir, 'consul-agent-ca.pem'),
        cert_file: path.join(dir, 'dc1-server-consul-0.pem'),
        key_file: path.join(dir, 'dc1-server-consul-0-key.pem'),
        ...extra,
      },
    });
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('serves HTTPS only with verify_incoming; its own client speaks HTTPS with its certificate', async () => {
    const agent = await Agent.start({ tls: serverTls({ verify_incoming: true }), ports: { https: 0, http: -1 } });
    try {
      assert.ok(agent.httpsAddr);
      assert.equal(agent.httpsAddr, agent.httpAddr);
      const c = agent.client();
      assert.equal(c.address, `https://${agent.httpsAddr}`);
      assert.equal(await c.kv.put('embedded/tls', 'yes'), true);
      assert.equal((await c.kv.get('embedded/tls')).value.toString(), 'yes');
      const anonymous = new Client({ address: `https://${agent.httpsAddr}`, caFile: path.join(dir, 'consul-agent-ca.pem') });
      await assert.rejects(anonymous.kv.get('embedded/tls'), (e) => e.code === 'CONNECTION' && /client certificate/.test(e.message));
      const cli = new Client({
        address: `https://${agent.httpsAddr}`,
        caFile: path.join(dir, 'consul-agent-ca.pem'),
        clientCert: path.join(dir, 'dc1-cli-consul-0.pem'),
        clientKey: path.join(dir, 'dc1-cli-consul-0-key.pem'),
      });
      assert.equal((await cli.kv.get('embedded/tls')).value.toString(), 'yes');
    } finally {
      await agent.shutdown();
    }
  });

  it('serves HTTP and HTTPS side by side', async () => {
    const agent = await Agent.start({ tls: serverTls(), ports: { https: 0 } });
    try {
      assert.ok(agent.httpsAddr && agent.httpsAddr !== agent.httpAddr);
      assert.equal(agent.client().address, `http://${agent.httpAddr}`);
      await agent.client().kv.put('both', '1');
      const c = new Client({ address: `https://${agent.httpsAddr}`, caFile: path.join(dir, 'consul-agent-ca.pem') });
      assert.equal((await c.kv.get('both')).value.toString(), '1');
    } finally {
      await agent.shutdown();
    }
  });

  it('reads config keys with the binary\'s parser: refused and unknown keys reject naming them', async () => {
    await assert.rejects(Agent.start({ config: { auto_encrypt: { tls: true } } }),
      (e) => e instanceof ConsulError && e.code === 'INVALID_ARGUMENT' && e.message.includes('auto_encrypt.tls'));
    await assert.rejects(Agent.start({ tls: { defualts: {} } }),
      (e) => e.code === 'INVALID_ARGUMENT' && e.message.includes('tls.defualts'));
    assert.throws(() => Agent.start({ tls: 'x' }), TypeError);
    const agent = await Agent.start({ config: { node_meta: { rack: 'r1' }, limits: { kv_max_value_size: 4 } } });
    try {
      await assert.rejects(agent.client().kv.put('big', '0123456789'));
    } finally {
      await agent.shutdown();
    }
  });
});
