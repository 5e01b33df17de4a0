// The agent's settings for the console, read once from the <meta> tag the agent fills in.

function readConfig() {
  const meta = document.querySelector('meta[name="consul-rs-ui-config"]');
  let parsed = {};
  try {
    parsed = JSON.parse(meta ? meta.content : '{}');
  } catch {
    // An unfilled template (served as a plain file) still gets a working console.
    parsed = {};
  }
  let path = parsed.ContentPath || '/ui/';
  if (!path.endsWith('/')) path += '/';
  return {
    ContentPath: path,
    Datacenter: parsed.Datacenter || parsed.LocalDatacenter || 'dc1',
    LocalDatacenter: parsed.LocalDatacenter || parsed.Datacenter || 'dc1',
    NodeName: parsed.NodeName || '',
    Version: parsed.Version || '',
    ACLsEnabled: Boolean(parsed.ACLsEnabled),
    MetricsProvider: parsed.MetricsProvider || '',
    MetricsProviderOptions: parsed.MetricsProviderOptions && typeof parsed.MetricsProviderOptions === 'object' ? parsed.MetricsProviderOptions : {},
    MetricsProxyEnabled: Boolean(parsed.MetricsProxyEnabled),
    MetricsProviderFiles: Boolean(parsed.MetricsProviderFiles),
    DashboardURLTemplates: parsed.DashboardURLTemplates || {},
  };
}

/** The console's configuration (ContentPath always ends with a slash). */
export const config = readConfig();
