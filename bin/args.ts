import { BanyanError } from '../lib/errors.js';

/** Parsed command line: positional words and `--flag value` / `--flag` options. */
export interface Args {
  readonly words: string[];
  readonly flags: Map<string, string | true>;
}

/**
 * Parses `argv` against the flags a command knows: `valued` take a value
 * (`--x v` or `--x=v`), `switches` do not. Unknown flags are errors.
 */
export function parseArgs(argv: string[], valued: string[], switches: string[]): Args {
  const words: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      words.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (switches.includes(name)) {
      flags.set(name, true);
    } else if (valued.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new BanyanError('bad-arguments', `--${name} needs a value`);
      flags.set(name, value);
    } else {
      const known = [...valued, ...switches].map((f) => `--${f}`).join(', ') || 'none';
      throw new BanyanError('bad-arguments', `unknown option --${name}`, `options here: ${known}`);
    }
  }
  return { words, flags };
}
