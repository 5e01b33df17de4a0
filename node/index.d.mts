// Types of the ES module entry: the same API as the CommonJS entry, plus a default export.
export * from './index.js';
import * as consul from './index.js';
export default consul;
