/**
 * What a fence taken on an older timeline means on the primary of a newer
 * one. PostgreSQL's timeline history (`0000000N.history`) records where each
 * timeline ended: a write at or before that switch point was in the promoted
 * server's WAL and survived; one after it was acknowledged by the old primary
 * but never reached the standby, and is lost. Pure functions, no I/O.
 */

/** Timeline `timeline` ended at `switchLsn` (one line of a history file). */
export interface TimelineSwitch {
  readonly timeline: number;
  readonly switchLsn: bigint;
}

/** How a request's reads honour a fence: compare LSNs as usual, or read from the primary (and why). */
export type TimelineVerdict = { readonly kind: 'lsn' } | { readonly kind: 'primary'; readonly lost: boolean };

/** The lines of a timeline history file: `<parent tli>\t<switch LSN>\t<reason>`; comments and blank lines skipped. */
export function parseTimelineHistory(text: string, parseLsn: (s: string) => bigint | undefined): TimelineSwitch[] {
  const out: TimelineSwitch[] = [];
  for (const line of text.split('\n')) {
    const [tli, lsn] = line.trim().split(/\s+/);
    if (!tli || tli.startsWith('#') || !lsn) continue;
    const switchLsn = parseLsn(lsn);
    if (/^\d+$/.test(tli) && switchLsn !== undefined) out.push({ timeline: Number(tli), switchLsn });
  }
  return out;
}

/**
 * A fence from the primary's own timeline, or with no timeline (an old pin),
 * compares LSNs. One from an older timeline does too when the history shows
 * the write before the switch point. Past it, the write is lost: no server
 * will ever hold it, so reads go to the primary (the newest state there is)
 * until the pin expires, and never wait for it. Without the history (not
 * readable here) or with a fence from a timeline newer than the primary we
 * know, the primary answers too.
 */
export function fenceOnTimeline(
  fence: { readonly minLsn: bigint; readonly timeline?: number | undefined },
  primaryTimeline: number | undefined,
  history: readonly TimelineSwitch[] | undefined,
): TimelineVerdict {
  if (fence.timeline === undefined || primaryTimeline === undefined || fence.timeline === primaryTimeline) return { kind: 'lsn' };
  if (fence.timeline > primaryTimeline || history === undefined) return { kind: 'primary', lost: false };
  const ended = history.find((s) => s.timeline === fence.timeline);
  if (ended === undefined) return { kind: 'primary', lost: false };
  return fence.minLsn <= ended.switchLsn ? { kind: 'lsn' } : { kind: 'primary', lost: true };
}
