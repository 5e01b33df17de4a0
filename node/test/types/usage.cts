// The CommonJS view of the same declarations.
import consul = require('consul-rs');

const c = new consul.Client({ address: '127.0.0.1:8500' });
const p: Promise<consul.KvPair | null> = c.kv.get('k');
const e = new consul.ConsulError('x', 'TIMEOUT');
void p;
void e;
