import { unwatchFile, watchFile } from 'node:fs';
import { DEFAULTS, type Settings } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';
import { listen } from '../lib/http-server.js';
import { createProxyMetrics, preZeroRoutes } from '../metrics/catalog.js';
import {
  type CompiledTable,
  compileTable,
  describeChange,
  parseRoutesFile,
  routesFileText,
  validateTable,
  type Validation,
} from '../routing/table/index.js';
import { accessLog } from './access-log.js';
import { createAdmin } from './admin.js';
import { proxyReadiness, requireLegacy } from './readiness.js';
import { clientLimits, listenPublic, type ClientLimits } from './runtime.js';
import { createProxy, type Proxy } from './proxy.js';

export interface FileProxyOptions {
  readonly settings: Pick<
    Settings,
    'host' | 'adminHost' | 'drainMs' | 'trustedProxies' | 'sessionCookie' | 'debugHeaders' | 'accessLog'
  > & {
    readonly routesFile: string;
    readonly routesPollMs?: number;
  } & Partial<Pick<Settings, 'headersTimeoutMs' | 'maxClientConnections'>> &
    Partial<ClientLimits>;
  /** LEGACY_URL and APP_URL: the endpoints of the upstreams whose table entry says `"env": "LEGACY_URL"` (or APP_URL). */
  readonly legacyUrl?: string | undefined;
  readonly appUrl?: string | undefined;
  readonly port: number;
  readonly adminPort: number;
  readonly log?: (line: string) => void;
}

export interface FileProxyRuntime {
  readonly url: string;
  readonly adminUrl: string;
  readonly proxy: Proxy;
  readonly routes: FileRoutes;
  stop(): Promise<void>;
}

/**
 * The route table from a file, as Traefik, Skipper and nginx start: the file
 * is validated at start (an invalid one is refused with every problem
 * named), then watched; a valid change replaces the table at once (one
 * object swap: a request sees the old table or the new one, never a mix),
 * and an invalid one is logged and the running table kept. The audit is the
 * log: each applied change says what changed.
 */
export class FileRoutes {
  current: CompiledTable;
  readonly #path: string;
  readonly #log: (line: string) => void;
  readonly #onChange: (table: CompiledTable) => void;
  #text: string;

  constructor(path: string, log: (line: string) => void, onChange: (table: CompiledTable) => void) {
    this.#path = path;
    this.#log = log;
    this.#onChange = onChange;
    this.#text = routesFileText(path);
    const checked = check(path, this.#text);
    if (!checked.ok)
      throw new BanyanError('routes-file-invalid', `routes file ${path} is not a valid route table:\n  ${checked.problems.join('\n  ')}`);
    this.current = compileTable(checked.routes, 1, checked.upstreams);
  }

  /** Watches the file (a stat poll: it also sees editors that replace the file). */
  watch(intervalMs: number): void {
    watchFile(this.#path, { interval: intervalMs, persistent: false }, () => this.reload());
  }

  /** Re-reads the file; applies it when it is valid and different. */
  reload(): void {
    let text: string;
    try {
      text = routesFileText(this.#path);
    } catch (err) {
      this.#log(`routes: cannot read ${this.#path} (${(err as Error).message}); keeping version ${this.current.version}`);
      return;
    }
    if (text === this.#text) return;
    this.#text = text;
    // A bare list of routes keeps the upstreams in effect.
    const checked = check(this.#path, text, this.current.upstreams);
    if (!checked.ok) {
      this.#log(
        `routes: ${this.#path} changed but is not valid; keeping version ${this.current.version}:\n  ${checked.problems.join('\n  ')}`,
      );
      return;
    }
    const before = this.current;
    this.current = compileTable(checked.routes, before.version + 1, checked.upstreams);
    const changes = describeChange(before.routes, checked.routes, before.upstreams, checked.upstreams);
    this.#log(
      `routes: applied ${this.#path} as version ${this.current.version}: ${changes.length ? changes.join('; ') : 'no route changed'}`,
    );
    this.#onChange(this.current);
  }

  stop(): void {
    unwatchFile(this.#path);
  }
}

/** A routes file's table (the object with upstreams, or a bare list of routes with `upstreams`, those in effect), checked. */
function check(path: string, text: string, upstreams?: CompiledTable['upstreams']): Validation {
  const parsed = parseRoutesFile(path, text);
  if (!parsed.ok) return { ok: false, problems: [parsed.problem] };
  return validateTable(parsed.value, { upstreams });
}

/**
 * `banyan proxy` without DATABASE_URL: one proxy on a routes file alone. It
 * has no read-your-writes pins, no usage ledger and no route API (they live
 * in PostgreSQL); /readyz and the start-up lines say so.
 */
export async function startFileProxyRuntime(options: FileProxyOptions): Promise<FileProxyRuntime> {
  const { settings } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const metrics = createProxyMetrics();
  const routes = new FileRoutes(settings.routesFile, log, (table) => {
    metrics.tableVersion.set(table.version);
    preZeroRoutes(metrics, table.routes);
  });
  metrics.tableVersion.set(routes.current.version);
  preZeroRoutes(metrics, routes.current.routes);
  routes.watch(settings.routesPollMs ?? DEFAULTS.routesPollMs);
  const proxy = createProxy({
    legacyUrl: options.legacyUrl,
    appUrl: options.appUrl,
    metrics,
    table: routes,
    log,
    trustedProxies: settings.trustedProxies,
    sessionCookie: settings.sessionCookie,
    debugHeaders: settings.debugHeaders,
    accessLog: accessLog(settings.accessLog),
    ...clientLimits(settings),
  });
  const opened: { close(): Promise<void> }[] = [{ close: async () => routes.stop() }, { close: () => proxy.close() }];
  const closeAll = async () => {
    for (const item of opened.reverse()) await item.close();
  };
  try {
    await requireLegacy(proxy.upstreams);
    const publicSide = await listenPublic(proxy, settings, options.port);
    opened.push(publicSide);
    const checks = proxyReadiness({
      upstreams: () => proxy.upstreams.snapshot(),
      tableVersion: () => routes.current.version,
      routeCount: () => routes.current.routes.length,
    });
    const admin = createAdmin({
      hostNames: [settings.adminHost],
      registry: metrics.registry,
      ready: async () => ({
        ...(await checks()),
        mode: {
          ok: true,
          required: false,
          detail: `file-only: routes from ${settings.routesFile}, watched; a single instance without read-your-writes pins, usage ledger or route API (set DATABASE_URL for those)`,
        },
      }),
    });
    const adminSide = await listen(admin.callback(), options.adminPort, settings.adminHost, 'ADMIN_PORT');
    opened.push(adminSide);
    return { url: publicSide.url, adminUrl: adminSide.url, proxy, routes, stop: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
