/**
 * What a shadowed HTML route compares, as operators write it in
 * `shadow.html.compare`: a name for each fact of the page, read by a CSS
 * selector as text or as an attribute, then normalized:
 *
 *   "offered": "a#download@href|basename"
 *   "version": "h1|version"
 *   "files":   "table.files a@href|basename|sorted"
 *
 * Each field reads every element the selector matches, in document order (the
 * text with its whitespace collapsed, or the attribute after `@`), and passes
 * the list through the normalizations left to right. Pure: parsing, checking
 * and the normalizations; matching the selector is the comparer's
 * (proxy/shadow-html.ts).
 */
import { compile } from 'css-select';

/** One field of `shadow.html.compare`, parsed. */
export interface HtmlField {
  readonly selector: string;
  /** Read this attribute; undefined: the element's text. */
  readonly attribute: string | undefined;
  readonly normalize: readonly Normalization[];
}

/** `/packages/a/b/demo-1.0.tar.gz#sha256=…` → `demo-1.0.tar.gz`: where a link points, not how a page writes it. */
function basename(value: string): string {
  const path = value.replace(/[?#].*$/s, '').replace(/\/+$/, '');
  const last = path.slice(path.lastIndexOf('/') + 1);
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** A PEP 440 version, as written in a title or a heading ("demo 1.0rc1" → "1.0rc1"): the last one in the text. */
const VERSION =
  /(?:\d+!)?\d+(?:\.\d+)*(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)\d*)?(?:[-_.]?(?:post|rev|r)\d*)?(?:[-_.]?dev\d*)?(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?/gi;

/** Each normalization takes the list a selector read and gives the list compared. */
export const NORMALIZATIONS = {
  basename: (values: readonly string[]) => values.map(basename),
  version: (values: readonly string[]) => values.map((v) => [...v.matchAll(VERSION)].at(-1)?.[0] ?? ''),
  lower: (values: readonly string[]) => values.map((v) => v.toLowerCase()),
  sorted: (values: readonly string[]) => [...values].sort(),
  unique: (values: readonly string[]) => [...new Set(values)],
  count: (values: readonly string[]) => [String(values.length)],
} as const satisfies Record<string, (values: readonly string[]) => string[]>;

export type Normalization = keyof typeof NORMALIZATIONS;
const NAMES = Object.keys(NORMALIZATIONS) as Normalization[];

/** A compare field's name: what `routes shadow` groups mismatches under. */
const FIELD_NAME = /^[A-Za-z][\w.-]{0,63}$/;
/** An HTML attribute name as a selector field reads it. */
const ATTRIBUTE = /^[A-Za-z_:][-\w:.]*$/;

/**
 * Parses `SELECTOR[@ATTRIBUTE][|NORMALIZATION…]`. The normalizations and the
 * attribute are taken from the right, so a selector may itself hold `|`
 * (`[lang|=en]`). A string when it is not one: what is wrong, for the field's error.
 */
export function parseHtmlField(spec: string): HtmlField | string {
  let rest = spec.trim();
  const normalize: Normalization[] = [];
  for (let m = /\|\s*([A-Za-z]\w*)\s*$/.exec(rest); m; m = /\|\s*([A-Za-z]\w*)\s*$/.exec(rest)) {
    const name = m[1]!;
    if (!(NAMES as string[]).includes(name)) return `"${name}" is not a normalization (known: ${NAMES.join(', ')})`;
    normalize.unshift(name as Normalization);
    rest = rest.slice(0, m.index).trimEnd();
  }
  let attribute: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    attribute = rest.slice(at + 1).trim();
    rest = rest.slice(0, at).trimEnd();
    if (!ATTRIBUTE.test(attribute)) return `"@${attribute}" is not an attribute name (write "a@href", "img@src")`;
  }
  if (!rest) return 'needs a CSS selector before the attribute and normalizations, such as "a#download@href|basename"';
  try {
    compile(rest);
  } catch (err) {
    return `"${rest}" is not a CSS selector css-select can run (${(err as Error).message})`;
  }
  return { selector: rest, attribute, normalize };
}

/** Reads a field's values through its normalizations. */
export function normalizeValues(field: HtmlField, values: readonly string[]): string[] {
  return field.normalize.reduce<string[]>((list, name) => NORMALIZATIONS[name](list), [...values]);
}

/** Checks `shadow.html`; every problem names its field (`shadow.html.compare.offered`). */
export function checkHtmlShadow(raw: unknown, say: (field: string, message: string) => void): void {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    say('shadow.html', 'must be an object such as {"compare": {"version": "h1|version"}}');
    return;
  }
  const html = raw as Record<string, unknown>;
  for (const key of Object.keys(html)) if (key !== 'compare') say(`shadow.html.${key}`, 'is not an html shadow setting (compare)');
  const compare = html['compare'];
  if (compare === undefined) return;
  if (typeof compare !== 'object' || compare === null || Array.isArray(compare) || Object.keys(compare).length === 0) {
    say('shadow.html.compare', 'must name at least one field, such as {"offered": "a#download@href|basename"}');
    return;
  }
  for (const [name, spec] of Object.entries(compare as Record<string, unknown>)) {
    const field = `shadow.html.compare.${name}`;
    if (!FIELD_NAME.test(name)) say(field, 'a field name is a letter then letters, digits, ".", "_" or "-" (at most 64)');
    if (typeof spec !== 'string') {
      say(field, 'must be a text such as "table.files a@href|basename|sorted"');
      continue;
    }
    const parsed = parseHtmlField(spec);
    if (typeof parsed === 'string') say(field, parsed);
  }
}
