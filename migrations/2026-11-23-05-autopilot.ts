import { sql } from 'kysely';
import type { UntypedDb } from './untyped.js';

/**
 * The cutover autopilot: plans (one active per route), the lease that lets
 * one proxy of the fleet decide, and the evidence every proxy reports for the
 * routes under a plan (counts per backend, a latency histogram, shadow
 * comparisons and, for brownouts, user agents), summed over the fleet.
 */
export async function up(db: UntypedDb): Promise<void> {
  await sql`CREATE TABLE cutover_plans (
    id bigserial PRIMARY KEY,
    route text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('promote', 'retire')),
    plan jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'paused', 'done', 'rolled-back', 'stopped', 'aborted', 'overridden')),
    step integer NOT NULL DEFAULT -1,
    step_started_at timestamptz,
    held boolean NOT NULL DEFAULT false,
    start_route jsonb NOT NULL,
    expected_route jsonb,
    reason text NOT NULL DEFAULT '',
    actor text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
  )`.execute(db);
  await sql`CREATE UNIQUE INDEX cutover_plans_one_active ON cutover_plans (route) WHERE status IN ('running', 'paused')`.execute(db);
  await sql`CREATE TABLE autopilot_lease (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
  )`.execute(db);
  await sql`CREATE TABLE cutover_samples (
    id bigserial PRIMARY KEY,
    route text NOT NULL,
    instance text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    backend text NOT NULL CHECK (backend IN ('legacy', 'new', 'proxy')),
    requests integer NOT NULL DEFAULT 0,
    errors integer NOT NULL DEFAULT 0,
    fallbacks integer NOT NULL DEFAULT 0,
    latency integer[] NOT NULL DEFAULT '{}',
    matches integer NOT NULL DEFAULT 0,
    mismatches integer NOT NULL DEFAULT 0,
    agents jsonb
  )`.execute(db);
  await sql`CREATE INDEX cutover_samples_route_at ON cutover_samples (route, at)`.execute(db);
}

export async function down(db: UntypedDb): Promise<void> {
  await sql`DROP TABLE cutover_samples`.execute(db);
  await sql`DROP TABLE autopilot_lease`.execute(db);
  await sql`DROP TABLE cutover_plans`.execute(db);
}
