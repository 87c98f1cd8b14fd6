import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export const PROMTOOL = '/usr/bin/promtool';

/**
 * Runs `promtool check metrics` on an exposition text; resolves with its
 * complaints ('' when clean). Skips the calling test, saying why, when
 * promtool is not installed (.ci/run installs Debian's prometheus).
 */
export async function promtoolProblems(ctx: Mocha.Context, text: string): Promise<string> {
  if (!existsSync(PROMTOOL)) {
    console.log(`      (skipped: ${PROMTOOL} is not installed; apt-get install prometheus, as .ci/run does)`);
    ctx.skip();
  }
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics']);
    let out = '';
    child.stdout.on('data', (d) => { out += String(d); });
    child.stderr.on('data', (d) => { out += String(d); });
    child.on('error', reject);
    child.on('close', (code) => resolve(code === 0 ? out.trim() : `exit ${code}: ${out.trim()}`));
    child.stdin.end(text);
  });
}
