// The one integer reader of the shard's and the router's settings (flags or environment variables).
import type { Setting } from "./flag-or-env.js";

/** null when the setting is absent; throws, naming the flag or variable, when it is not an integer in range. */
export function parseInteger(setting: Setting | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | null {
  if (setting === undefined) return null;
  const { text, source } = setting;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new Error(`${source} must be an integer ${range}, got ${JSON.stringify(text)}`);
  }
  return value;
}
