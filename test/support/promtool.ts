import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export const PROMTOOL = '/usr/bin/promtool';

/**
 * Runs `promtool check metrics` on an exposition text; resolves with its
 * complaints ('' when clean). Skips the calling test, saying why, when
 * promtool is not installed (.ci/run installs Debian's prometheus).
 */
export async function promtoolProblems(ctx: Mocha.Context, text: string): Promise<string> {
  const { code, output } = await promtool(ctx, ['check', 'metrics'], text);
  return code === 0 ? output : `exit ${code}: ${output}`;
}

/** Runs `promtool args…` in `cwd` with `input` on stdin; skips the calling test, saying why, when promtool is not installed. */
export async function promtool(
  ctx: Mocha.Context,
  args: string[],
  input = '',
  cwd?: string,
): Promise<{ code: number | null; output: string }> {
  if (!existsSync(PROMTOOL)) {
    console.log(`      (skipped: ${PROMTOOL} is not installed; apt-get install prometheus, as .ci/run does)`);
    ctx.skip();
  }
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, args, { cwd });
    let out = '';
    child.stdout.on('data', (d) => {
      out += String(d);
    });
    child.stderr.on('data', (d) => {
      out += String(d);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output: out.trim() }));
    child.stdin.end(input);
  });
}
