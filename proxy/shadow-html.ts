import { selectAll } from 'css-select';
import type { Element } from 'domhandler';
import { getAttributeValue, textContent } from 'domutils';
import { Parser, parseDocument } from 'htmlparser2';
import { normalizeValues, parseHtmlField, type HtmlField } from '../routing/table/shadow-html-fields.js';

/**
 * Pages compared by what they say, not how they are written. htmlparser2
 * parses both answers: it is fast, takes a page cut at the shadow's size
 * limit without complaint, and forgives the unclosed tags and upper-case
 * HTML 4 of legacy pages; css-select runs the route's selectors over its DOM.
 *
 * Without `shadow.html.compare`, a page is reduced to its visible words and
 * its links, in order: no doctype, comments, scripts, styles, attribute
 * order or whitespace. With it, only the named fields are compared.
 */

/** One place where two pages differ, as the comparer reports it (see shadow-compare.ts). */
export interface HtmlDifference {
  readonly where: string;
  readonly legacy: string;
  readonly new: string;
}

/** A compare field with its name and the text the route wrote for it (shown in the group). */
export interface NamedHtmlField {
  readonly name: string;
  readonly spec: string;
  readonly field: HtmlField;
}

/** Words of context shown either side of the first differing word. */
const CONTEXT_WORDS = 6;

/** Elements whose contents a visitor never reads as text. */
const HIDDEN = new Set(['script', 'style', 'template', 'head', 'title', 'noscript']);

/** Inline elements: their tags do not separate words (`<b>down</b>load` is one word). */
const INLINE = new Set([
  'a',
  'abbr',
  'b',
  'bdi',
  'bdo',
  'big',
  'cite',
  'code',
  'data',
  'dfn',
  'em',
  'font',
  'i',
  'kbd',
  'label',
  'mark',
  'q',
  's',
  'samp',
  'small',
  'span',
  'strike',
  'strong',
  'sub',
  'sup',
  'time',
  'tt',
  'u',
  'var',
]);

/** A page's visible words and its links, in document order. */
export interface PageSummary {
  readonly words: string[];
  readonly links: string[];
}

/**
 * Reads a page as a visitor does: its words (whitespace collapsed, hidden
 * elements skipped, block boundaries separating words) and where its links
 * point. Streams through the page: no DOM is built.
 */
export function summarizePage(html: string): PageSummary {
  const words: string[] = [];
  const links: string[] = [];
  let hidden = 0;
  let partial = '';
  const flush = () => {
    if (partial) words.push(partial);
    partial = '';
  };
  const parser = new Parser(
    {
      onopentag(name, attributes) {
        if (HIDDEN.has(name)) hidden++;
        if (!INLINE.has(name)) flush();
        if (name === 'a' && attributes['href'] !== undefined) links.push(attributes['href'].trim());
      },
      ontext(text) {
        if (hidden) return;
        const parts = text.split(/\s+/);
        partial += parts[0]!;
        for (let i = 1; i < parts.length; i++) {
          flush();
          partial = parts[i]!;
        }
      },
      onclosetag(name) {
        if (HIDDEN.has(name) && hidden > 0) hidden--;
        if (!INLINE.has(name)) flush();
      },
    },
    { decodeEntities: true },
  );
  parser.end(html);
  flush();
  return { words, links };
}

/** The default comparison: the first differing word (with its context) and the first differing link. */
export function comparePages(legacy: string, candidate: string): HtmlDifference[] {
  const a = summarizePage(legacy);
  const b = summarizePage(candidate);
  const out: HtmlDifference[] = [];
  const word = firstDifference(a.words, b.words);
  if (word >= 0) out.push({ where: 'html text', legacy: around(a.words, word), new: around(b.words, word) });
  const link = firstDifference(a.links, b.links);
  if (link >= 0) out.push({ where: 'html links', legacy: linkAt(a.links, link), new: linkAt(b.links, link) });
  return out;
}

/** The index of the first place two lists differ (a missing entry counts), or -1. */
function firstDifference(a: readonly string[], b: readonly string[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function around(words: readonly string[], i: number): string {
  if (i >= words.length) return `(end of page after ${words.length} words)`;
  const from = Math.max(0, i - CONTEXT_WORDS);
  return `${from > 0 ? '… ' : ''}${words.slice(from, i + CONTEXT_WORDS + 1).join(' ')}${i + CONTEXT_WORDS + 1 < words.length ? ' …' : ''}`;
}

function linkAt(links: readonly string[], i: number): string {
  return i < links.length ? `link ${i + 1}: ${links[i]}` : `(no link ${i + 1}; ${links.length} links)`;
}

/** What one field reads on a page: each match's attribute (matches without it are skipped) or text, normalized. */
export function readField(dom: ReturnType<typeof parseDocument>, field: HtmlField): string[] {
  const elements = selectAll<unknown, Element>(field.selector, dom);
  const values: string[] = [];
  for (const element of elements) {
    if (field.attribute === undefined) values.push(textContent(element).replace(/\s+/g, ' ').trim());
    else {
      const value = getAttributeValue(element, field.attribute);
      if (value !== undefined) values.push(value.trim());
    }
  }
  return normalizeValues(field, values);
}

/** The named fields compared: one difference per field that reads differently, grouped by its name and spec. */
export function compareFields(legacy: string, candidate: string, fields: readonly NamedHtmlField[]): HtmlDifference[] {
  const a = parseDocument(legacy);
  const b = parseDocument(candidate);
  const out: HtmlDifference[] = [];
  for (const { name, spec, field } of fields) {
    const x = readField(a, field);
    const y = readField(b, field);
    if (x.length !== y.length || x.some((v, i) => v !== y[i]))
      out.push({ where: `html ${name} (${spec})`, legacy: showValues(x), new: showValues(y) });
  }
  return out;
}

function showValues(values: readonly string[]): string {
  if (values.length === 0) return '(nothing matched)';
  const text = values.length === 1 ? values[0] || '(empty)' : values.join(', ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

const parsedFields = new WeakMap<object, NamedHtmlField[]>();

/** A route's `shadow.html.compare`, parsed once per route table (the table checked every field already). */
export function namedFields(compare: Readonly<Record<string, string>>): NamedHtmlField[] {
  let fields = parsedFields.get(compare);
  if (!fields) {
    fields = Object.entries(compare).map(([name, spec]) => {
      const field = parseHtmlField(spec);
      if (typeof field === 'string') throw new Error(`shadow.html.compare.${name}: ${field}`);
      return { name, spec, field };
    });
    parsedFields.set(compare, fields);
  }
  return fields;
}
