import { spawn, type ChildProcess } from 'node:child_process';
import { BANYAN } from './cli.js';

/** `banyan proxy` as its own process, as operators run it. */
export async function startProxyProcess(
  env: NodeJS.ProcessEnv,
  args: string[] = [],
): Promise<{ child: ChildProcess; url: string; adminUrl: string; exited: Promise<number | null>; output: () => string }> {
  const child = spawn(process.execPath, [BANYAN, 'proxy', ...args], {
    env: { ...process.env, PORT: '0', ADMIN_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const match = /proxy listening on (http:\/\/[\d.:]+), admin on (http:\/\/[\d.:]+)/.exec(output);
    if (
      match &&
      args.includes('--workers') &&
      output.split('proxy listening on').length - 1 < Number(args[args.indexOf('--workers') + 1])
    ) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    if (match) return { child, url: match[1]!, adminUrl: match[2]!, exited, output: () => output };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`banyan proxy did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `banyan app` or `banyan legacy` as its own process, on any free port, once it says where it listens. */
export async function startServerProcess(
  command: 'app' | 'legacy' | 'files',
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null>; output: () => string }> {
  const child = spawn(process.execPath, [BANYAN, command], {
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const listening = new RegExp(
    `${command === 'legacy' ? 'legacy backend' : command === 'files' ? 'files service' : 'app'} listening on (http://[\\d.:]+)`,
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    const match = listening.exec(output);
    if (match) return { child, url: match[1]!, exited, output: () => output };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`banyan ${command} did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
