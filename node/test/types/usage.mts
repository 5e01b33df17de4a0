// Compiled by test/types.test.mjs (tsc --noEmit): the declarations cover the public API as used.
import consul, { Agent, Check, Client, ConsulError, ErrorCodes, register } from 'consul-rs';
import type { KvPair, ServiceEntry, WatchEvent } from 'consul-rs';

async function main(): Promise<void> {
  const agent: Agent = await Agent.start({ nodeName: 'n', ports: { http: 0 }, retryJoin: [], server: true });
  const c: Client = agent.client({ timeoutMs: 1000 });
  const ok: boolean = await c.kv.put('k', Buffer.from('v'), { cas: 0, flags: 1 });
  const pair: KvPair | null = await c.kv.get('k', { consistent: true });
  const text: string | undefined = pair?.value?.toString();
  const keys: string[] = await c.kv.keys('', { separator: '/' });
  const entries: ServiceEntry[] = await c.health.service('web', { passing: true });
  const port: number = entries[0].port;
  const reg = await register({ name: 'web', port: 80, check: Check.ttl('10s'), agent, token: 't' });
  const secured: Agent = await Agent.start({
    acl: { enabled: true, defaultPolicy: 'deny', tokenTtl: '30s', tokens: { initialManagement: 'root', agent: 'a' } },
  });
  const withToken: Client = new Client({ token: 'root', tokenFile: '/run/secrets/consul-token' });
  const overTls: Client = new Client({
    address: 'https://127.0.0.1:8501', caFile: 'ca.pem', caPath: 'cas/', clientCert: 'c.pem', clientKey: 'k.pem',
    tlsServerName: 'server.dc1.consul', insecureSkipVerify: false, https: true,
  });
  await secured.client({ token: 'root' }).kv.get('k').catch((e: ConsulError) => e.code === 'PERMISSION_DENIED');
  void withToken;
  void overTls;
  const w = c.watch.key('k', { signal: AbortSignal.timeout(1000) });
  for await (const ev of w) {
    const e: WatchEvent<KvPair | null> = ev;
    if (e.value) break;
  }
  const sub = c.watch.keyPrefix('p/').subscribe((err, ev) => {
    if (err) console.log(err.code, err.httpStatus);
    else console.log(ev?.value.length);
  });
  await sub.stop();
  const d = await c.discover('web').ready({ timeoutMs: 100 });
  const picked: ServiceEntry | null = d.pick({ strategy: 'consistentHash', key: 'user' });
  const n: number = await c.lock('l', async (lock) => (lock.signal.aborted ? 0 : 1), { ttl: '15s', waitMs: 10 });
  const election = c.leaderElection('leader', { onElected: () => {} }).unref();
  const leading: boolean = await election.waitForLeadership({ timeoutMs: 10 });
  await election.resign();
  const members = await agent.members();
  const status: string = members[0].statusText;
  try {
    await c.txn([{ KV: { Verb: 'get', Key: 'k' } }]);
  } catch (e) {
    if (e instanceof ConsulError && e.code === ErrorCodes.CONFLICT) console.log(e.httpStatus);
  }
  await reg.close();
  await agent.shutdown();
  console.log(ok, text, keys, port, picked, n, leading, status, consul.Client === Client);
}

void main();
