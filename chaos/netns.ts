import { execFileSync } from 'node:child_process';

/**
 * Network namespaces for partitions: a component runs in a namespace of its
 * own, joined to this one by a veth pair, and reaches every other component
 * through an address of its own on the host side of that pair. Cutting one
 * of those addresses drops its packets (a blackhole rule in the namespace),
 * so connections hang as they do when a network splits, instead of being
 * refused as they are when a process dies.
 */

/** One namespace and its veth pair: the component inside listens on `inside`, and reaches `hostAddress(i)` outside. */
export interface Namespace {
  readonly name: string;
  /** The namespace's own address, where the component inside listens. */
  readonly inside: string;
  /** The i-th address on the host side (1 to 99): one per component the namespace talks to, so each can be cut alone. */
  hostAddress(i: number): string;
  /** The command line that runs `argv` inside the namespace. */
  exec(argv: readonly string[]): string[];
  /** Drops every packet that comes back from host address `address` (the namespace's side of the link to it is cut). */
  cut(address: string): void;
  heal(address: string): void;
  /** Removes the namespace and its veth pair; safe to call twice, and after a failed setup. */
  remove(): void;
}

/**
 * Why namespaces cannot be made here (not root, no `ip`, or `ip netns add` refused), or undefined when
 * they can: one is made and removed to find out.
 */
export function namespacesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: making network namespaces needs root (ip netns add)';
  const probe = `banyan-probe-${process.pid}`;
  try {
    ip(['netns', 'add', probe]);
  } catch (err) {
    return `cannot make network namespaces here: ${(err as Error).message.split('\n')[0]}`;
  }
  try {
    ip(['netns', 'del', probe]);
  } catch {
    /* removed with the process's namespaces anyway */
  }
  return undefined;
}

/**
 * Makes namespace number `slot` (0 to 9) of this process: `10.<a>.<b>.2` inside, `10.<a>.<b>.<i + 100>`
 * on the host side, on a /24 of its own chosen from the process id, so two runs side by side do not meet.
 */
export function makeNamespace(slot: number): Namespace {
  const tag = `${process.pid % 100_000}${slot}`;
  const name = `banyan-${tag}`;
  const host = `bnh${tag}`;
  const peer = `bnn${tag}`;
  const subnet = `10.${200 + (process.pid % 50)}.${(Math.floor(process.pid / 50) * 10 + slot) % 250}`;
  const inside = `${subnet}.2`;
  const hostAddress = (i: number) => {
    if (!Number.isInteger(i) || i < 1 || i > 99) throw new Error(`host address ${i}: 1 to 99`);
    return `${subnet}.${100 + i}`;
  };
  const ns = (argv: string[]) => ip(['netns', 'exec', name, 'ip', ...argv]);
  const rule = (verb: 'add' | 'del', address: string) =>
    ns(['rule', verb, 'pref', String(10 + Number(address.split('.')[3]) - 100), 'from', address, 'blackhole']);
  const namespace: Namespace = {
    name,
    inside,
    hostAddress,
    exec: (argv) => ['ip', 'netns', 'exec', name, ...argv],
    cut: (address) => rule('add', address),
    heal: (address) => {
      try {
        rule('del', address);
      } catch {
        /* not cut */
      }
    },
    remove: () => {
      try {
        ip(['link', 'del', host]);
      } catch {
        /* gone, or never made */
      }
      try {
        ip(['netns', 'del', name]);
      } catch {
        /* gone, or never made */
      }
    },
  };
  try {
    namespace.remove();
    ip(['netns', 'add', name]);
    ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
    ip(['link', 'set', peer, 'netns', name]);
    ip(['addr', 'add', `${subnet}.1/24`, 'dev', host]);
    for (let i = 1; i <= 9; i++) ip(['addr', 'add', `${hostAddress(i)}/32`, 'dev', host]);
    ip(['link', 'set', host, 'up']);
    ns(['addr', 'add', `${inside}/24`, 'dev', peer]);
    ns(['link', 'set', peer, 'up']);
    ns(['link', 'set', 'lo', 'up']);
    // Local delivery is decided by the first rule (pref 0): moved after the cut rules (pref 11 to 19), so a
    // cut drops what comes back from that address before the namespace's sockets ever see it.
    ns(['rule', 'add', 'pref', '100', 'lookup', 'local']);
    ns(['rule', 'del', 'pref', '0']);
  } catch (err) {
    namespace.remove();
    throw err;
  }
  return namespace;
}

function ip(argv: readonly string[]): string {
  try {
    return execFileSync('ip', argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${argv.join(' ')}: ${(e.stderr || e.message).trim()}`, { cause: err });
  }
}
