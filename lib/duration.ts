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

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** Parses a size such as `100MB`, `512KiB` or `1048576` (bytes) into bytes. `what` names the setting in the error. */
export function parseSize(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$/i.exec(text);
  if (!match || Number(match[1]) <= 0) {
    throw new BanyanError('bad-size', `${what} must be a size like 100MB, 512KiB or a number of bytes, not "${text}"`);
  }
  return Math.round(Number(match[1]) * SIZE_UNITS[(match[2] ?? '').toLowerCase()]!);
}
