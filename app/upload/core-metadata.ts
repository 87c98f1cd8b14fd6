import { readFileSync } from 'node:fs';
import { parseVersion } from '../../package-index/pep440.js';

/** The Metadata-Version values the core metadata specification has defined. */
export const METADATA_VERSIONS = ['1.0', '1.1', '1.2', '2.0', '2.1', '2.2', '2.3', '2.4'] as const;

/** A parsed METADATA / PKG-INFO: RFC 822-style headers (names lower-cased), each possibly repeated. */
export interface CoreMetadata {
  first(name: string): string | undefined;
  all(name: string): string[];
}

/**
 * Parses core metadata: `Name: value` lines, continuation lines starting
 * with whitespace, up to the first blank line (the description body after
 * it is not needed here).
 */
export function parseCoreMetadata(bytes: Buffer): CoreMetadata {
  const fields = new Map<string, string[]>();
  let last: { name: string; index: number } | undefined;
  for (const line of bytes.toString('utf8').split(/\r?\n/)) {
    if (line === '') break;
    if (/^[ \t]/.test(line) && last) {
      const list = fields.get(last.name)!;
      list[last.index] = `${list[last.index]}\n${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const list = fields.get(name) ?? [];
    list.push(line.slice(colon + 1).trim());
    fields.set(name, list);
    last = { name, index: list.length - 1 };
  }
  return { first: (name) => fields.get(name)?.[0], all: (name) => fields.get(name) ?? [] };
}

let classifiers: Set<string> | undefined;

/** Whether a classifier is one of the trove classifiers (package-index/data/trove-classifiers.txt). */
export function isKnownClassifier(classifier: string): boolean {
  classifiers ??= new Set(
    readFileSync(new URL('../../package-index/data/trove-classifiers.txt', import.meta.url), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#')),
  );
  return classifiers.has(classifier);
}

const OPERATORS = ['===', '~=', '==', '!=', '<=', '>=', '<', '>'];

/**
 * Why a PEP 440 specifier set (`>=3.8, <4`, `==1.*`) is invalid, or undefined when it is valid.
 * An empty set is valid (it allows every version).
 */
export function specifierProblem(text: string): string | undefined {
  if (text.trim() === '') return undefined;
  for (const raw of text.split(',')) {
    const spec = raw.trim();
    const op = OPERATORS.find((o) => spec.startsWith(o));
    if (!op) return `"${spec}" has no comparison operator (one of ${OPERATORS.join(' ')})`;
    const version = spec.slice(op.length).trim();
    if (version === '') return `"${spec}" has no version`;
    if (op === '===') {
      if (/\s/.test(version)) return `"${spec}": an arbitrary version has no spaces`;
      continue;
    }
    const wildcard = version.endsWith('.*');
    if (wildcard && op !== '==' && op !== '!=') return `"${spec}": only == and != take a .* wildcard`;
    const parsed = parseVersion(wildcard ? version.slice(0, -2) : version);
    if (!parsed) return `"${version}" is not a PEP 440 version`;
    if (op === '~=' && !version.includes('.')) return `"${spec}": ~= needs at least two release segments`;
    if (parsed.local && op !== '==' && op !== '!=') return `"${spec}": a local version only goes with == or !=`;
  }
  return undefined;
}

const MARKER_VARIABLES = new Set([
  'python_version',
  'python_full_version',
  'os_name',
  'sys_platform',
  'platform_release',
  'platform_system',
  'platform_version',
  'platform_machine',
  'platform_python_implementation',
  'implementation_name',
  'implementation_version',
  'extra',
  'dependency_groups',
  'extras',
  'os.name',
  'sys.platform',
  'platform.version',
  'platform.machine',
  'platform.python_implementation',
  'python_implementation',
]);
const MARKER_OPERATORS = ['===', '~=', '==', '!=', '<=', '>=', '<', '>', 'not in', 'in'];

/** Why a PEP 508 requirement (`requests[socks]>=2.8; python_version >= "3.8"`) is invalid, or undefined. */
export function requirementProblem(text: string): string | undefined {
  const semi = splitMarker(text);
  const head = semi.requirement.trim();
  const m = /^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$/s.exec(head);
  if (!m) return 'it does not start with a project name';
  if (m[2] !== undefined) {
    const extras = m[2].slice(1, -1).trim();
    if (extras !== '' && !extras.split(',').every((e) => /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(e.trim())))
      return `"${m[2]}" is not a list of extras`;
  }
  const rest = m[3]!.trim();
  if (rest.startsWith('@')) {
    const url = rest.slice(1).trim();
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\/\S+$/.test(url) && !/^file:\S+$/.test(url)) return `"${url}" is not a URL`;
    if (semi.marker !== undefined && !/\s$/.test(semi.requirement)) return 'a URL requirement needs a space before its ;';
  } else if (rest !== '') {
    const spec = rest.startsWith('(') && rest.endsWith(')') ? rest.slice(1, -1) : rest;
    const problem = specifierProblem(spec);
    if (problem) return problem;
  }
  if (semi.marker !== undefined) return markerProblem(semi.marker);
  return undefined;
}

function splitMarker(text: string): { requirement: string; marker?: string } {
  const i = text.indexOf(';');
  return i < 0 ? { requirement: text } : { requirement: text.slice(0, i), marker: text.slice(i + 1) };
}

/** A recursive-descent check of a PEP 508 environment marker. */
function markerProblem(text: string): string | undefined {
  const tokens: string[] = [];
  const re = /\s*(\(|\)|'[^']*'|"[^"]*"|===|~=|==|!=|<=|>=|<|>|not\s+in\b|in\b|and\b|or\b|[A-Za-z_][A-Za-z0-9_.]*|\S+)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) tokens.push(m[1]!.replace(/\s+/g, ' '));
  if (text.trim() === '') return 'the marker after ; is empty';
  let i = 0;
  const value = (): string | undefined => {
    const t = tokens[i];
    if (t === undefined) return 'the marker ends too early';
    if (/^['"]/.test(t) || MARKER_VARIABLES.has(t)) {
      i++;
      return undefined;
    }
    return `"${t}" is not a marker variable or a quoted string`;
  };
  const comparison = (): string | undefined => {
    if (tokens[i] === '(') {
      i++;
      const inner = or();
      if (inner) return inner;
      if (tokens[i] !== ')') return 'a ( in the marker is not closed';
      i++;
      return undefined;
    }
    const left = value();
    if (left) return left;
    const op = tokens[i];
    if (!op || !MARKER_OPERATORS.includes(op)) return `"${op ?? ''}" is not a marker operator`;
    i++;
    return value();
  };
  const and = (): string | undefined => {
    let p = comparison();
    while (!p && tokens[i] === 'and') {
      i++;
      p = comparison();
    }
    return p;
  };
  const or = (): string | undefined => {
    let p = and();
    while (!p && tokens[i] === 'or') {
      i++;
      p = and();
    }
    return p;
  };
  const problem = or();
  if (problem) return problem;
  return i < tokens.length ? `unexpected "${tokens[i]}" in the marker` : undefined;
}

/** A wheel platform tag pip can install somewhere: not a bare `linux_*` (built on one machine, for that machine). */
export function platformTagProblem(tag: string): string | undefined {
  if (/^linux_/.test(tag))
    return `Binary wheel has an unsupported platform tag '${tag}'. Build it with manylinux or musllinux (auditwheel repair).`;
  if (
    tag === 'any' ||
    /^(manylinux|musllinux)_\d+_\d+_\w+$/.test(tag) ||
    /^manylinux(1|2010|2014)_\w+$/.test(tag) ||
    /^macosx_\d+_\d+_\w+$/.test(tag) ||
    /^win(32|_amd64|_arm64|_arm32|_ia64)$/.test(tag) ||
    /^(ios|android)_\w+$/.test(tag) ||
    /^(emscripten|pyodide)_\d+_\d+_\w+$/.test(tag)
  )
    return undefined;
  return `Binary wheel has an unsupported platform tag '${tag}'.`;
}
