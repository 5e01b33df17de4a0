// Metrics providers, as Consul's console has them: a global registry
// (`consul.registerMetricsProvider(name, provider)`) that the built-in `prometheus` provider and
// the operator's `ui_config.metrics_provider_files` (served by the agent as
// `<content_path>assets/compiled-metrics-providers.js`) register into; the one named by
// `ui_config.metrics_provider` is initialised with `metrics_provider_options_json` plus helpers
// that go through the agent's metrics proxy.

import { config } from './config.js';
import { storedToken } from './api.js';

/** The methods a provider must have (Consul's interface). */
export const PROVIDER_METHODS = [
  'init',
  'serviceRecentSummarySeries',
  'serviceRecentSummaryStats',
  'upstreamRecentSummaryStats',
  'downstreamRecentSummaryStats',
];

/** The registry behind `window.consul`, shared with scripts loaded as classic scripts. */
class Registry {
  constructor() {
    this.registry = {};
    this.providers = {};
  }

  /** Registers `provider` under `name` after checking it has every method of the interface. */
  registerMetricsProvider(name, provider) {
    const missing = PROVIDER_METHODS.filter((m) => typeof (provider && provider[m]) !== 'function');
    if (missing.length) throw new Error(`metrics provider "${name}" cannot be registered: it has no ${missing.join(', ')}`);
    this.registry[name] = provider;
    delete this.providers[name];
  }

  /** The provider `name`, initialised once with `options` (init may throw: the caller shows it). */
  getMetricsProvider(name, options) {
    if (!(name in this.registry)) throw new Error(`no metrics provider named "${name}" is registered`);
    if (!(name in this.providers)) {
      const p = Object.create(this.registry[name]);
      p.init(options);
      this.providers[name] = p;
    }
    return this.providers[name];
  }
}

if (!window.consul || typeof window.consul.registerMetricsProvider !== 'function') {
  window.consul = new Registry();
}

/** The proxy prefix every provider request goes through. */
const PROXY = '/v1/internal/ui/metrics-proxy';

/** fetch() through the agent's metrics proxy, carrying the console's ACL token. */
function proxyFetch(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const secret = storedToken()?.SecretID;
  if (secret) headers.set('X-Consul-Token', secret);
  return fetch(`${PROXY}${path.startsWith('/') ? '' : '/'}${path}`, { ...init, headers });
}

/**
 * GET `path` (under the proxy) with `queryParams` encoded; resolves the parsed JSON body. A
 * non-2xx answer rejects with an Error carrying `statusCode` and the body the agent or backend
 * sent (the proxy's own refusals are plain text).
 */
export async function httpGet(path, queryParams, headers) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(queryParams || {})) {
    if (v !== undefined && v !== null) qs.append(k, String(v));
  }
  const q = qs.toString();
  const url = q ? `${path}${path.includes('?') ? '&' : '?'}${q}` : path;
  const resp = await proxyFetch(url, { headers: headers || {} });
  const text = await resp.text();
  if (!resp.ok) {
    let detail = text.trim();
    try {
      const parsed = JSON.parse(text);
      if (parsed && parsed.error) detail = parsed.error;
    } catch {
      // not JSON: the text as it came
    }
    const e = new Error(`HTTP ${resp.status}${resp.statusText ? ` ${resp.statusText}` : ''}${detail ? `: ${detail}` : ''}`);
    e.statusCode = resp.status;
    throw e;
  }
  return text === '' ? null : JSON.parse(text);
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const el = document.createElement('script');
    el.src = src;
    el.onload = () => resolve();
    el.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.appendChild(el);
  });
}

let loading = null;

/**
 * The configured provider, initialised; null when `ui_config.metrics_provider` is unset. Rejects
 * when the provider is unknown, its files do not load, or its init throws.
 */
export function metricsProvider() {
  if (!config.MetricsProvider) return Promise.resolve(null);
  if (!loading) {
    loading = (async () => {
      const builtin = await import('./prometheus.js');
      if (!('prometheus' in window.consul.registry)) window.consul.registerMetricsProvider('prometheus', builtin.provider);
      if (config.MetricsProviderFiles) await loadScript(`${config.ContentPath}assets/compiled-metrics-providers.js`);
      const options = {
        ...(config.MetricsProviderOptions || {}),
        metrics_proxy_enabled: config.MetricsProxyEnabled,
        fetch: proxyFetch,
        httpGet,
      };
      return window.consul.getMetricsProvider(config.MetricsProvider, options);
    })();
    // A failure is not cached: the next page visit tries again.
    loading.catch(() => { loading = null; });
  }
  return loading;
}
