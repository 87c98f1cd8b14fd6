import type { ColumnType, Generated } from 'kysely';

export type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A timestamp the database fills in (DEFAULT now()). */
export type CreatedAt = ColumnType<Date, Date | string | undefined, Date | string>;

/**
 * Banyan's own tables, in their PostgreSQL schema (BANYAN_SCHEMA, `banyan` by default), as the
 * migrations in `migrations/` leave them. The package index's are in package-index/schema.ts.
 */
export interface BanyanDatabase {
  route_table_versions: RouteTableVersionsTable;
  route_audit: RouteAuditTable;
  usage_ledger: UsageLedgerTable;
  usage_user_agents: UsageUserAgentsTable;
  usage_flushes: UsageFlushesTable;
  cutover_plans: CutoverPlansTable;
  autopilot_lease: AutopilotLeaseTable;
  cutover_samples: CutoverSamplesTable;
}

export interface RouteTableVersionsTable {
  version: number;
  routes: unknown;
  /** The upstreams this version sends to; null in versions stored before upstreams were named (legacy and app, implicitly). */
  upstreams: unknown;
  actor: string;
  reason: string;
  created_at: CreatedAt;
}

export interface RouteAuditTable {
  id: Generated<string>;
  version: number;
  action: string;
  actor: string;
  reason: string;
  before: unknown;
  after: unknown;
  /** The upstreams before and after the change; null in rows written before upstreams were named. */
  before_upstreams: unknown;
  after_upstreams: unknown;
  at: CreatedAt;
}

export interface UsageLedgerTable {
  bucket: Timestamp;
  route: string;
  feature: string;
  backend: string;
  /** The upstream that answered: legacy, app, files, …, or proxy. */
  service: string;
  /** `2xx` … `5xx`, `aborted` (the client left before the answer), `unknown` (counted before classes were kept). */
  status_class: Generated<string>;
  requests: string;
  last_seen: Timestamp;
}

export interface UsageUserAgentsTable {
  bucket: Timestamp;
  route: string;
  feature: string;
  user_agent: string;
  requests: string;
}

export interface UsageFlushesTable {
  flush_id: string;
  instance: string;
  flushed_at: CreatedAt;
}

export interface CutoverPlansTable {
  id: Generated<string>;
  route: string;
  kind: string;
  /** The plan file as given (durations as text); validated again whenever it is read. */
  plan: unknown;
  status: string;
  step: Generated<number>;
  step_started_at: Date | null;
  /** Whether this step's hold event went out (once per step). */
  held: Generated<boolean>;
  /** The route as it was before the plan: where a rollback or an abort puts it. */
  start_route: unknown;
  /** The route as the autopilot last wrote it; anything else means an operator changed it. */
  expected_route: unknown;
  reason: Generated<string>;
  actor: string;
  created_at: CreatedAt;
  updated_at: CreatedAt;
  /** The step the plan waits to be approved into (`"approve": true`), while it waits. */
  awaiting: number | null;
  /** Who approved which step: `[{ step, by, at }]`. */
  approvals: Generated<unknown>;
  /** Rollbacks a dry-run budget would have made, the first per step and budget: `[{ step, check, at, reason }]`. */
  watched: Generated<unknown>;
}

export interface AutopilotLeaseTable {
  name: string;
  holder: string;
  expires_at: Date;
  acquired_at: CreatedAt;
}

export interface CutoverSamplesTable {
  id: Generated<string>;
  route: string;
  instance: string;
  at: CreatedAt;
  backend: string;
  requests: number;
  errors: number;
  fallbacks: number;
  latency: number[];
  matches: number;
  mismatches: number;
  agents: unknown;
}
