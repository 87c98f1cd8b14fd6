import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BanyanError } from '../lib/errors.js';

/** The OS identity a server process runs as. */
export interface RunAs {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * PostgreSQL refuses to run as root, so when we are root the servers run as
 * an unprivileged account: `postgres` where the system has one, else `nobody`.
 * Returns undefined when we are not root (servers run as ourselves).
 */
export function unprivilegedUser(): RunAs | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'));
  for (const wanted of ['postgres', 'nobody']) {
    const entry = passwd.find((fields) => fields[0] === wanted);
    if (entry && entry[2] && entry[3]) {
      return { name: wanted, uid: Number(entry[2]), gid: Number(entry[3]) };
    }
  }
  throw new BanyanError(
    'no-unprivileged-user',
    'running as root, and neither a "postgres" nor a "nobody" account exists for PostgreSQL to run as',
    'create one with `useradd --system postgres`, or start Banyan as a normal user',
  );
}

/** Whether `user` may use `path` as `test` understands `flag` (-x, -w, -r). */
export function canAccessAs(user: RunAs | undefined, path: string, flag: '-x' | '-w' | '-r'): boolean {
  const result = spawnSync('test', [flag, path], user ? { uid: user.uid, gid: user.gid } : {});
  return result.status === 0;
}

/** spawn() options that run a child as `user` (nothing when undefined). */
export function spawnIdentity(user: RunAs | undefined): { uid?: number; gid?: number } {
  return user ? { uid: user.uid, gid: user.gid } : {};
}
