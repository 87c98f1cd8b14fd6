import { BanyanError } from './errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration such as `250ms`, `2s`, `1.5m`, `30d` (a bare number is
 * milliseconds) into milliseconds. `what` names the setting in the error.
 */
export function parseDuration(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) {
    throw new BanyanError('bad-duration', `${what} must be a duration like 500ms, 2s or 1m, not "${text}"`);
  }
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 'ms']!);
}
