/**
 * Where one request's reads go, decided from what the monitor last read of each server. A pure
 * function: the DB router gathers the readings, calls it, and waits (for a fence) when it says so;
 * everything about the choice itself is here, and tested without a server.
 */

/** Why a request's reads went where they went (a metric label). */
export type ReadReason =
  | 'no_fence' // no fence: any replica within the lag limits
  | 'fence_met' // a replica had replayed the fence
  | 'fence_wait' // one had after waiting for it (BANYAN_FENCE_WAIT_MS)
  | 'fence_unmet' // none had, within the wait: the primary
  | 'pinned' // a timed pin: the session reads from the primary
  | 'lagging' // every reachable replica is past the lag limits: the primary
  | 'replica_down' // no replica is reachable: the primary
  | 'no_replica' // there is only the primary
  | 'primary_busy' // every replica lags and the primary has its share of reads: the least-lagged replica
  | 'old_timeline'; // a fence from before a failover: the primary

/** One replica as the monitor last read it. */
export interface ReplicaReading {
  /** The server's index in the router's list; the choice names it. */
  readonly index: number;
  /** It answered the last reading. */
  readonly healthy: boolean;
  /** Its breaker is open (reads on it failed to connect). */
  readonly breakerOpen: boolean;
  /** How far it has replayed the primary's WAL (undefined: not known yet). */
  readonly replayLsn: bigint | undefined;
  readonly lagBytes: number;
  readonly lagSeconds: number;
  /** Reads running on it now. */
  readonly inFlight: number;
}

export interface ChoicePolicy {
  /** A replica further behind than either serves no reads in the normal course. */
  readonly maxLagBytes: number;
  readonly maxLagSeconds: number;
  /** With every replica past the limits, unfenced reads may still use one this far behind, when the primary is busy. */
  readonly staleReadLimitSeconds: number;
  /** Among replicas that qualify: take turns, or the one with the fewest reads running. */
  readonly spread: 'round-robin' | 'least-in-flight';
}

export interface ChoiceInput {
  /** The servers the router knows, the primary included. */
  readonly serverCount: number;
  readonly replicas: readonly ReplicaReading[];
  /** What the request must see: everything up to `minLsn`, or (a timed pin) the primary. */
  readonly fence: { readonly minLsn?: bigint | undefined; readonly primary?: boolean | undefined };
  /** The fence was written on a timeline the current primary has left (decided by `fenceOnTimeline`). */
  readonly fenceOnOldTimeline: boolean;
  /** The primary serves as many reads as it may take (maxPrimaryReads). */
  readonly primaryBusy: boolean;
  /** How many choices round-robin has made so far: its next turn. */
  readonly turn: number;
  /**
   * `first`: the request's first look. `waiting`: the router has waited for a new reading and may wait
   * more. `last`: the wait is over. Only a fence that no replica has met makes the router wait.
   */
  readonly phase: 'first' | 'waiting' | 'last';
  /** Whether the router may wait for a replica to replay the fence (BANYAN_FENCE_WAIT_MS > 0). */
  readonly mayWait: boolean;
}

export type Choice =
  | { readonly kind: 'read'; readonly target: 'primary' | number; readonly reason: ReadReason; readonly tookTurn: boolean }
  | { readonly kind: 'wait' };

export function chooseReader(input: ChoiceInput, policy: ChoicePolicy): Choice {
  const primary = (reason: ReadReason): Choice => ({ kind: 'read', target: 'primary', reason, tookTurn: false });
  const spread = (among: readonly ReplicaReading[], reason: ReadReason): Choice => {
    if (policy.spread === 'least-in-flight' && among.length > 1) {
      let best = among[0]!;
      for (const r of among) if (r.inFlight < best.inFlight) best = r;
      return { kind: 'read', target: best.index, reason, tookTurn: false };
    }
    return { kind: 'read', target: among[input.turn % among.length]!.index, reason, tookTurn: true };
  };
  const { fence } = input;
  if (fence.primary) return primary('pinned');
  if (input.fenceOnOldTimeline) return primary('old_timeline');
  if (input.serverCount === 1) return primary('no_replica');

  const usable = usableReplicas(input.replicas, policy);
  if (fence.minLsn === undefined) {
    if (usable.length) return spread(usable, 'no_fence');
    const stale = input.primaryBusy ? leastLagged(input.replicas, policy.staleReadLimitSeconds) : undefined;
    if (stale) return { kind: 'read', target: stale.index, reason: 'primary_busy', tookTurn: false };
    return primary(input.replicas.some((r) => r.healthy) ? 'lagging' : 'replica_down');
  }
  const minLsn = fence.minLsn;
  const caughtUp = usable.filter((r) => r.replayLsn! >= minLsn);
  if (caughtUp.length) return spread(caughtUp, input.phase === 'first' ? 'fence_met' : 'fence_wait');
  // While waiting, only a replica that catches up can end the wait early.
  if (input.phase === 'waiting') return { kind: 'wait' };
  if (input.phase === 'first') {
    if (usable.length === 0) return primary(input.replicas.some((r) => r.healthy) ? 'lagging' : 'replica_down');
    if (input.mayWait) return { kind: 'wait' };
  }
  return primary('fence_unmet');
}

/** Replicas that may serve reads in the normal course: reachable, breaker closed, within both lag limits. */
export function usableReplicas(replicas: readonly ReplicaReading[], policy: ChoicePolicy): ReplicaReading[] {
  return replicas.filter(
    (r) =>
      r.healthy && !r.breakerOpen && r.replayLsn !== undefined && r.lagBytes <= policy.maxLagBytes && r.lagSeconds <= policy.maxLagSeconds,
  );
}

/** The reachable replica furthest along, if within `limitSeconds` (for overflow reads). */
function leastLagged(replicas: readonly ReplicaReading[], limitSeconds: number): ReplicaReading | undefined {
  let best: ReplicaReading | undefined;
  for (const r of replicas) {
    if (!r.healthy || r.breakerOpen || r.replayLsn === undefined || r.lagSeconds > limitSeconds) continue;
    if (best === undefined || r.replayLsn > best.replayLsn!) best = r;
  }
  return best;
}
