import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A timestamp the database fills in (DEFAULT now()). */
type CreatedAt = ColumnType<Date, Date | string | undefined, Date | string>;

/** The database as the migrations in `migrations/` leave it. */
export interface Database {
  users: UsersTable;
  api_tokens: ApiTokensTable;
  projects: ProjectsTable;
  project_roles: ProjectRolesTable;
  releases: ReleasesTable;
  files: FilesTable;
  journal: JournalTable;
  route_table_versions: RouteTableVersionsTable;
  route_audit: RouteAuditTable;
  usage_ledger: UsageLedgerTable;
  usage_user_agents: UsageUserAgentsTable;
  usage_flushes: UsageFlushesTable;
  account_events: AccountEventsTable;
  cutover_plans: CutoverPlansTable;
  autopilot_lease: AutopilotLeaseTable;
  cutover_samples: CutoverSamplesTable;
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

export interface UsersTable {
  id: Generated<string>;
  username: string;
  password_hash: string | null;
  email: string | null;
  is_active: Generated<boolean>;
  created_at: CreatedAt;
}

export interface ApiTokensTable {
  id: Generated<string>;
  user_id: string;
  description: string;
  token_hash: string;
  created_at: CreatedAt;
  last_used_at: Timestamp | null;
  /** The one project the token may upload to; null: every project its user may. */
  project_id: string | null;
}

export interface ProjectsTable {
  id: Generated<string>;
  name: string;
  normalized_name: string;
  last_serial: Generated<string>;
  created_at: CreatedAt;
}

export interface ProjectRolesTable {
  project_id: string;
  user_id: string;
  role: 'Owner' | 'Maintainer';
}

export interface ReleasesTable {
  id: Generated<string>;
  project_id: string;
  version: string;
  canonical_version: string;
  summary: string | null;
  requires_python: string | null;
  metadata: Generated<Record<string, unknown>>;
  yanked: Generated<boolean>;
  yanked_reason: string | null;
  /** PEP 440 order as a byte-wise sortable string (package-index/pep440.ts sortKey). */
  sort_key: string;
  is_prerelease: boolean;
  created_at: CreatedAt;
}

export interface FilesTable {
  id: Generated<string>;
  release_id: string;
  filename: string;
  packagetype: 'sdist' | 'bdist_wheel';
  python_version: string;
  requires_python: string | null;
  size: string;
  sha256_digest: string;
  path: string;
  upload_time: CreatedAt;
  /** SHA-256 of the wheel's METADATA, stored beside it as `<path>.metadata` (PEP 658); null when not extracted. */
  metadata_sha256: ColumnType<string | null, string | null | undefined, string | null>;
  md5_digest: ColumnType<string | null, string | null | undefined, string | null>;
  blake2_256_digest: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface JournalTable {
  id: Generated<string>;
  project_name: string;
  version: string | null;
  action: string;
  submitted_by: string | null;
  submitted_at: CreatedAt;
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

export interface AccountEventsTable {
  id: Generated<string>;
  at: CreatedAt;
  /** Who made the change: a username, or `operator (<os user>)` for the command line. */
  actor: string;
  /** Whose role or token changed. */
  username: string;
  /** `add Maintainer`, `remove Owner`, `create token`, `revoke token`. */
  action: string;
  project_name: string | null;
  token_id: string | null;
}
