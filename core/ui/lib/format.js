// Formatting of API values for display.

/** Decodes a base64 value (KV values, event payloads) as UTF-8 text. */
export function decodeBase64(value, strict = false) {
  if (value === null || value === undefined) return '';
  const bin = atob(value);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder('utf-8', { fatal: strict }).decode(bytes);
}

/** Formats nanoseconds (LockDelay) like Go's time.Duration. */
export function nanos(ns) {
  if (!ns) return '0s';
  const ms = ns / 1e6;
  if (ms < 1000) return `${ms}ms`;
  return `${ms / 1000}s`;
}

/** Formats milliseconds with a sensible precision. */
export function millis(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 100) return `${ms.toFixed(2)} ms`;
  return `${Math.round(ms)} ms`;
}

/** Worst of a list of check statuses (critical > warning > passing). */
export function worstStatus(checks) {
  let worst = 'passing';
  for (const c of checks || []) {
    if (c.Status === 'critical') return 'critical';
    if (c.Status === 'warning') worst = 'warning';
  }
  return worst;
}

/** Network-coordinate round trip between two Vivaldi coordinates, in milliseconds. */
export function rttMillis(a, b) {
  if (!a || !b || !a.Vec || !b.Vec || a.Vec.length !== b.Vec.length) return null;
  let sum = 0;
  for (let i = 0; i < a.Vec.length; i++) {
    const d = a.Vec[i] - b.Vec[i];
    sum += d * d;
  }
  let dist = Math.sqrt(sum) + (a.Height || 0) + (b.Height || 0);
  const adjusted = dist + (a.Adjustment || 0) + (b.Adjustment || 0);
  if (adjusted > 0) dist = adjusted;
  return dist * 1000;
}
