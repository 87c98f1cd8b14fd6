import { expect } from 'chai';
import { Command } from 'commander';
import { argsOf, type Args } from '../bin/command.js';

/** Parses `argv` with a `routes set`-like tree and returns what the handler would receive. */
function parse(argv: string[]): Args {
  let got: Args | undefined;
  const top = new Command('banyan').exitOverride();
  const routes = top.command('routes').exitOverride();
  routes
    .command('set')
    .argument('<name>')
    .option('--mode <mode>')
    .option('--fallback')
    .option('--no-fallback')
    .option('--dry-run')
    .option('--expected-version <n>')
    .exitOverride()
    .action((...received: unknown[]) => {
      got = argsOf(received.at(-1) as Command);
    });
  top
    .command('start')
    .option('--no-restart')
    .option('--workers <n>')
    .exitOverride()
    .action((...received: unknown[]) => {
      got = argsOf(received.at(-1) as Command);
    });
  top.parse(argv, { from: 'user' });
  return got!;
}

describe('command-line arguments as handlers see them', () => {
  it('gives the subcommand and its arguments as words, and only the flags typed, by their long names', () => {
    const args = parse(['routes', 'set', 'project.page', '--mode=new', '--expected-version', '7', '--dry-run']);
    expect(args.words).to.deep.equal(['set', 'project.page']);
    expect([...args.flags]).to.deep.equal([
      ['mode', 'new'],
      ['dry-run', true],
      ['expected-version', '7'],
    ]);
  });

  it('tells --fallback from --no-fallback from neither', () => {
    expect([...parse(['routes', 'set', 'x', '--fallback']).flags]).to.deep.equal([['fallback', true]]);
    expect([...parse(['routes', 'set', 'x', '--no-fallback']).flags]).to.deep.equal([['no-fallback', true]]);
    expect(parse(['routes', 'set', 'x']).flags.size, 'a default is not something the user typed').to.equal(0);
  });

  it('keeps a lone --no-x switch under its own name, and a top-level command has no action word', () => {
    expect(parse(['start', '--no-restart', '--workers', '2'])).to.deep.equal({
      words: [],
      flags: new Map<string, string | true>([
        ['no-restart', true],
        ['workers', '2'],
      ]),
    });
    expect(parse(['start']).flags.size).to.equal(0);
  });
});
