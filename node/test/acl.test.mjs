// ACL token plumbing: `token` / `tokenFile` / CONSUL_HTTP_TOKEN(_FILE) sent as X-Consul-Token on
// every request (reads, watches, registrations), 401/403 as code PERMISSION_DENIED with the
// agent's message, and the embedded Agent's `acl` option. Header tests use a local HTTP fixture;
// the enforcement test runs against an embedded agent with ACLs on.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';

import { Agent, Client, ConsulError, register } from '../index.mjs';

let server;
let addr;
const seen = [];
let answer = [404, ''];

before(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, token: req.headers['x-consul-token'] });
      res.writeHead(answer[0], { 'Content-Type': 'application/json', 'X-Consul-Index': '1' });
      res.end(answer[1]);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  addr = `127.0.0.1:${server.address().port}`;
});
after(() => new Promise((r) => server.close(r)));
beforeEach(() => {
  seen.length = 0;
  answer = [404, ''];
  delete process.env.CONSUL_HTTP_TOKEN;
  delete process.env.CONSUL_HTTP_TOKEN_FILE;
});

describe('ACL tokens', () => {
  it('sends the token on reads and watches', async () => {
    const c = new Client({ address: addr, token: 's3cret' });
    await c.kv.get('k');
    const w = c.watch.key('k');
    await w.next();
    w.close();
    assert.ok(seen.length >= 2);
    assert.ok(seen.every((s) => s.token === 's3cret'), JSON.stringify(seen));
    seen.length = 0;
    await new Client({ address: addr }).kv.get('k');
    assert.equal(seen[0].token, undefined);
  });

  it('takes tokenFile and the environment, explicit options first', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'acl-test-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'token');
    fs.writeFileSync(file, 'from-file\n');
    process.env.CONSUL_HTTP_TOKEN = 'from-env';
    await new Client({ address: addr }).kv.get('k');
    assert.equal(seen.at(-1).token, 'from-env');
    await new Client({ address: addr, token: 'explicit' }).kv.get('k');
    assert.equal(seen.at(-1).token, 'explicit');
    await new Client({ address: addr, token: 'explicit', tokenFile: file }).kv.get('k');
    assert.equal(seen.at(-1).token, 'from-file');
    process.env.CONSUL_HTTP_TOKEN_FILE = file;
    await new Client({ address: addr }).kv.get('k');
    assert.equal(seen.at(-1).token, 'from-file');
    assert.throws(() => new Client({ address: addr, tokenFile: path.join(dir, 'missing') }), (e) => {
      assert.ok(e instanceof ConsulError);
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.match(e.message, /Error loading token file/);
      return true;
    });
  });

  it('registers with a token', async () => {
    process.env.CONSUL_HTTP_ADDR = addr;
    answer = [200, ''];
    try {
      const r = await register({ name: 'web', port: 8080, token: 'reg' });
      await r.close();
    } finally {
      delete process.env.CONSUL_HTTP_ADDR;
    }
    const agentCalls = seen.filter((s) => s.url.startsWith('/v1/agent/service/'));
    assert.ok(agentCalls.length >= 2, JSON.stringify(seen));
    assert.ok(agentCalls.every((s) => s.token === 'reg'));
    // A bad combination of values: a rejection, like every other bad value of a Promise call.
    await assert.rejects(register({ name: 'web', client: new Client({ address: addr }), token: 'x' }), /token/);
  });

  it('maps 401 and 403 to PERMISSION_DENIED with the agent message', async () => {
    const c = new Client({ address: addr, token: 't' });
    const denied = `Permission denied: token with AccessorID 'a1' lacks permission 'key:write' on "foo"`;
    for (const [status, body] of [[403, denied], [403, 'ACL not found'], [401, 'ACL support disabled']]) {
      answer = [status, body];
      await assert.rejects(c.kv.put('foo', 'v'), (e) => {
        assert.ok(e instanceof ConsulError);
        assert.equal(e.code, 'PERMISSION_DENIED');
        assert.equal(e.httpStatus, status);
        assert.ok(e.message.includes(body), e.message);
        return true;
      });
    }
  });

  it('validates the embedded agent acl option and starts with it', async () => {
    await assert.rejects(Agent.start({ acl: { enabled: true, defaultPolicy: 'maybe' } }), /default_policy/);
    await assert.rejects(Agent.start({ acl: { enabeld: true } }), /enabeld/);
    assert.throws(() => Agent.start({ acl: 'on' }), TypeError);
    const a = await Agent.start({ acl: { enabled: true, defaultPolicy: 'deny', tokens: { initialManagement: 'root' } } });
    try {
      const c = a.client({ token: 'root' });
      await c.kv.put('acl/probe', '1');
      assert.equal((await c.kv.get('acl/probe')).value.toString(), '1');
    } finally {
      await a.shutdown();
    }
  });

  it('enforces ACLs on the embedded agent', async () => {
    const a = await Agent.start({ acl: { enabled: true, defaultPolicy: 'deny', tokens: { initialManagement: 'root' } } });
    try {
      await assert.rejects(a.client().kv.put('foo', 'v'), (e) => e.code === 'PERMISSION_DENIED' && /Permission denied/.test(e.message));
      await assert.rejects(a.client({ token: 'nope' }).kv.get('foo'), (e) => e.code === 'PERMISSION_DENIED' && /ACL not found/.test(e.message));
      await a.client({ token: 'root' }).kv.put('foo', 'v');
    } finally {
      await a.shutdown();
    }
  });
});
