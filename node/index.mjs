// ES module entry: the same objects as the CommonJS entry (one native addon, one registry of
// live handles, whichever way the package is loaded).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const cjs = require('./index.js');

export const {
  Agent, Check, Client, ConsulError, Discovery, ErrorCodes, LeaderElection, Lock, Registration, Watch, register,
} = cjs;
export default cjs;
