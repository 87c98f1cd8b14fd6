import type { Command, Option } from 'commander';

/** What a command's handler receives: its action and positional words, and the flags given (by their long names). */
export interface Args {
  readonly words: string[];
  readonly flags: Map<string, string | true>;
}

/**
 * The parsed command line of `command` (a leaf of the commander tree) as
 * {@link Args}: `words` are the subcommand's name below its top-level command
 * (`set` in `banyan routes set x`) then its arguments; `flags` hold only the
 * options given on the command line, `--no-x` under its own name.
 */
export function argsOf(command: Command): Args {
  const words = command.parent?.parent ? [command.name(), ...command.args] : [...command.args];
  const flags = new Map<string, string | true>();
  for (const option of command.options as readonly Option[]) {
    const key = option.attributeName();
    if (command.getOptionValueSource(key) !== 'cli') continue;
    const value: unknown = command.getOptionValue(key);
    const long = option.long!.slice(2);
    if (typeof value === 'string') flags.set(long, value);
    else if (value === true && !option.negate) flags.set(long, true);
    else if (value === false && option.negate) flags.set(long, true);
  }
  return { words, flags };
}
