import type { Kysely } from 'kysely';

/**
 * A database that no table type describes, for migrations. A migration is frozen in time:
 * it must still run after today's `Database` type has changed, so it cannot be typed by it
 * (Kysely's own advice). This is the one `any` the project allows.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above: migrations outlive the schema's types
export type UntypedDb = Kysely<any>;
