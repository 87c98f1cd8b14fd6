import { compareFields, comparePages, type NamedHtmlField } from './shadow-html.js';

/** A response as seen by the comparer. */
export interface Observed {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

/** One place where the new app answered differently from legacy. */
export interface Difference {
  /** `status`, `header content-type`, `body line N` (text), `body.<json path>`, `html text`, `html links` or `html <field> (<spec>)`. */
  readonly where: string;
  readonly legacy: string;
  readonly new: string;
}

export type Verdict = 'match' | 'mismatch' | 'noise';

export interface CompareOptions {
  /** Response headers to compare (lower case). */
  readonly headers: readonly string[];
  /** JSON paths to ignore; `*` stands for any key or index: `urls.*.upload_time`. */
  readonly ignore: readonly string[];
  /** `shadow.html.compare`: when both answers are HTML, only these fields are compared. */
  readonly html?: readonly NamedHtmlField[] | undefined;
}

const MAX_DIFFERENCES = 20;

/**
 * Compares legacy's answer with the new app's: status, chosen headers, and
 * the body (field by field when both are JSON; by what the page says when
 * both are HTML, see shadow-html.ts). With `legacyAgain` (a second
 * legacy answer to the same request), whatever differs between the two legacy
 * answers is noise, like Diffy's: a request whose only differences are noise
 * is `noise`, not `mismatch`.
 */
export function compareResponses(
  legacy: Observed,
  candidate: Observed,
  options: CompareOptions,
  legacyAgain?: Observed,
): { verdict: Verdict; differences: Difference[] } {
  const ignore = options.ignore.map(pathPattern);
  const all = differences(legacy, candidate, options, ignore);
  if (all.length === 0) return { verdict: 'match', differences: [] };
  if (!legacyAgain) return { verdict: 'mismatch', differences: all.slice(0, MAX_DIFFERENCES) };
  const noisy = new Set(differences(legacy, legacyAgain, options, ignore).map((d) => d.where));
  const real = all.filter((d) => !noisy.has(d.where));
  return real.length ? { verdict: 'mismatch', differences: real.slice(0, MAX_DIFFERENCES) } : { verdict: 'noise', differences: [] };
}

function differences(a: Observed, b: Observed, options: CompareOptions, ignore: RegExp[]): Difference[] {
  const out: Difference[] = [];
  if (a.status !== b.status) out.push({ where: 'status', legacy: String(a.status), new: String(b.status) });
  for (const name of options.headers) {
    const x = headerText(a.headers[name]);
    const y = headerText(b.headers[name]);
    if (x !== y) out.push({ where: `header ${name}`, legacy: x, new: y });
  }
  if (a.body.equals(b.body)) return out;
  if (isHtml(a) && isHtml(b)) {
    const legacyPage = a.body.toString('utf8');
    const newPage = b.body.toString('utf8');
    out.push(...(options.html?.length ? compareFields(legacyPage, newPage, options.html) : comparePages(legacyPage, newPage)));
    return out;
  }
  const ja = asJson(a);
  const jb = asJson(b);
  if (ja !== undefined && jb !== undefined) {
    diffJson(ja.value, jb.value, 'body', ignore, out);
  } else {
    out.push(textDifference(a.body.toString('utf8'), b.body.toString('utf8')));
  }
  return out;
}

function headerText(value: string | string[] | undefined): string {
  if (value === undefined) return '(absent)';
  return Array.isArray(value) ? value.join(', ') : value;
}

function isHtml(o: Observed): boolean {
  return /^\s*(?:text\/html|application\/xhtml\+xml)\b/i.test(headerText(o.headers['content-type']));
}

function asJson(o: Observed): { value: unknown } | undefined {
  const type = headerText(o.headers['content-type']);
  const text = o.body.toString('utf8');
  if (!type.includes('json') && !/^\s*[[{]/.test(text)) return undefined;
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** Appends every leaf where `a` and `b` differ, skipping ignored paths. */
function diffJson(a: unknown, b: unknown, path: string, ignore: RegExp[], out: Difference[]): void {
  if (out.length >= MAX_DIFFERENCES * 4) return;
  if (ignore.some((re) => re.test(path))) return;
  const bothObjects = a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b);
  if (bothObjects) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
    for (const key of keys)
      diffJson((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${path}.${key}`, ignore, out);
    return;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ where: path, legacy: show(a), new: show(b) });
}

function show(value: unknown): string {
  if (value === undefined) return '(absent)';
  const text = JSON.stringify(value);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** The first line where two texts differ, with its number. */
function textDifference(a: string, b: string): Difference {
  const la = a.split('\n');
  const lb = b.split('\n');
  let i = 0;
  while (i < la.length && i < lb.length && la[i] === lb[i]) i++;
  const clip = (s: string | undefined) => (s === undefined ? '(end of body)' : s.length > 200 ? `${s.slice(0, 200)}…` : s);
  return { where: `body line ${i + 1}`, legacy: clip(la[i]), new: clip(lb[i]) };
}

/** `urls.*.upload_time` → a regex over `body.urls.3.upload_time`. */
function pathPattern(path: string): RegExp {
  const parts = path
    .replace(/^body\./, '')
    .split('.')
    .map((p) => (p === '*' ? '[^.]+' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return new RegExp(`^body\\.${parts.join('\\.')}$`);
}
