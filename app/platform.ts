/**
 * Which file to offer a visitor: the platform from a User-Agent (browsers and
 * pip's JSON user agent), distribution file names (PEP 427 wheels, sdists),
 * and the choice of the best file. Pure functions, no I/O.
 */

export type Os = 'windows' | 'macos' | 'linux' | 'unknown';
export type Arch = 'x86_64' | 'arm64' | 'x86' | 'unknown';

export interface Platform {
  readonly os: Os;
  readonly arch: Arch;
  /** `3.11` when the client says (pip does; browsers do not). */
  readonly python: string | undefined;
  readonly client: 'pip' | 'browser' | 'unknown';
}

/**
 * User-Agent Client Hints (Chromium): `Sec-CH-UA-Platform`, and, once the page has asked for them
 * with `Accept-CH`, `Sec-CH-UA-Arch` and `Sec-CH-UA-Bitness`. They tell what the User-Agent string no
 * longer does: an arm64 Mac or Windows machine.
 */
export interface ClientHints {
  readonly platform?: string | undefined;
  readonly arch?: string | undefined;
  readonly bitness?: string | undefined;
}

/** The hints this page asks browsers for (`Accept-CH`); they come on the next request. */
export const ACCEPT_CH = 'Sec-CH-UA-Arch, Sec-CH-UA-Bitness, Sec-CH-UA-Platform-Version';

/** Reads the platform from a User-Agent header, corrected by client hints when the browser sends them. */
export function detectPlatform(userAgent: string | undefined, hints: ClientHints = {}): Platform {
  const fromAgent = platformFromAgent(userAgent);
  const unquote = (v: string | undefined) =>
    (v ?? '')
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
  const hinted = unquote(hints.platform);
  const os: Os = hinted === 'windows' ? 'windows' : hinted === 'macos' ? 'macos' : hinted === 'linux' ? 'linux' : fromAgent.os;
  const arch = unquote(hints.arch);
  if (fromAgent.client !== 'browser' || !arch) return { ...fromAgent, os };
  const bits = unquote(hints.bitness);
  const hintedArch: Arch =
    arch === 'arm' ? (bits === '32' ? 'unknown' : 'arm64') : arch === 'x86' ? (bits === '32' ? 'x86' : 'x86_64') : fromAgent.arch;
  return { ...fromAgent, os, arch: hintedArch };
}

function platformFromAgent(userAgent: string | undefined): Platform {
  const ua = userAgent ?? '';
  const pip = /^pip\/\S+\s+(\{.*\})\s*$/.exec(ua);
  if (pip) {
    try {
      const data = JSON.parse(pip[1]!) as { cpu?: string; python?: string; system?: { name?: string } };
      const system = (data.system?.name ?? '').toLowerCase();
      const os: Os = system === 'windows' ? 'windows' : system === 'darwin' ? 'macos' : system === 'linux' ? 'linux' : 'unknown';
      const python = /^(\d+\.\d+)/.exec(data.python ?? '')?.[1];
      return { os, arch: archFromText(data.cpu ?? ''), python, client: 'pip' };
    } catch {
      // Not JSON after all: fall through to the browser rules.
    }
  }
  if (/Windows NT|Win64|Win32/i.test(ua)) {
    const arch: Arch = /ARM64|aarch64/i.test(ua) ? 'arm64' : /Win64|x64|WOW64|amd64/i.test(ua) ? 'x86_64' : 'x86';
    return { os: 'windows', arch, python: undefined, client: 'browser' };
  }
  if (/Macintosh|Mac OS X/i.test(ua) && !/iPhone|iPad/i.test(ua)) {
    // Browsers on Apple silicon still say "Intel Mac OS X": the architecture is unknown.
    return { os: 'macos', arch: /arm64|aarch64/i.test(ua) ? 'arm64' : 'unknown', python: undefined, client: 'browser' };
  }
  if (/Linux|X11/i.test(ua) && !/Android/i.test(ua)) {
    return { os: 'linux', arch: archFromText(ua), python: undefined, client: 'browser' };
  }
  return { os: 'unknown', arch: 'unknown', python: undefined, client: /Mozilla\//.test(ua) ? 'browser' : 'unknown' };
}

function archFromText(text: string): Arch {
  if (/x86_64|amd64|x64|Win64/i.test(text)) return 'x86_64';
  if (/aarch64|arm64/i.test(text)) return 'arm64';
  if (/i[3-6]86|x86/i.test(text)) return 'x86';
  return 'unknown';
}

export interface DistFile {
  readonly kind: 'sdist' | 'wheel';
  /** The project name as written in the file name (normalized for comparisons by the caller). */
  readonly name: string;
  readonly version: string;
  readonly python: readonly string[];
  readonly abi: readonly string[];
  readonly platforms: readonly string[];
}

const SDIST_SUFFIXES = ['.tar.gz', '.zip'];

/**
 * Splits a distribution file name: `name-1.0.tar.gz` (sdist), or
 * `name-1.0(-build)?-py3-none-any.whl` (wheel). Undefined when it is neither.
 */
export function parseFilename(filename: string): DistFile | undefined {
  if (filename.endsWith('.whl')) {
    const parts = filename.slice(0, -4).split('-');
    if (parts.length !== 5 && parts.length !== 6) return undefined;
    const [name, version] = parts;
    const [python, abi, platform] = parts.slice(-3);
    if (!name || !version || !python || !abi || !platform) return undefined;
    return { kind: 'wheel', name, version, python: python.split('.'), abi: abi.split('.'), platforms: platform.split('.') };
  }
  const suffix = SDIST_SUFFIXES.find((s) => filename.endsWith(s));
  if (!suffix) return undefined;
  const stem = filename.slice(0, -suffix.length);
  // The version is what follows the last '-' (PEP 625 names use '_' inside the name).
  const cut = stem.lastIndexOf('-');
  if (cut <= 0 || cut === stem.length - 1) return undefined;
  return { kind: 'sdist', name: stem.slice(0, cut), version: stem.slice(cut + 1), python: ['source'], abi: [], platforms: [] };
}

/** How well a wheel platform tag fits: 0 not at all, higher is better. */
function platformFit(tag: string, p: Platform): number {
  if (tag === 'any') return 1;
  if (p.os === 'windows') {
    if (tag === 'win_amd64') return p.arch === 'x86_64' ? 3 : p.arch === 'arm64' ? 2 : 0;
    if (tag === 'win_arm64') return p.arch === 'arm64' ? 3 : 0;
    if (tag === 'win32') return p.arch === 'x86' ? 3 : p.arch === 'x86_64' ? 2 : 0;
    return 0;
  }
  if (p.os === 'macos') {
    const m = /^macosx_\d+_\d+_(\w+)$/.exec(tag);
    if (!m) return 0;
    const arch = m[1]!;
    if (arch === 'universal2' || arch === 'universal') return 3.5;
    if (arch === 'x86_64' || arch === 'intel') return p.arch === 'arm64' ? 2 : 3;
    if (arch === 'arm64') return p.arch === 'arm64' ? 3 : p.arch === 'unknown' ? 2.5 : 0;
    return 0;
  }
  if (p.os === 'linux') {
    const m = /^(?:manylinux\w*?|musllinux_\d+_\d+|linux)_(x86_64|aarch64|i686|armv7l|ppc64le|s390x)$/.exec(tag);
    if (!m) return 0;
    const arch = m[1] === 'aarch64' ? 'arm64' : m[1] === 'i686' ? 'x86' : m[1];
    if (p.arch === 'unknown') return arch === 'x86_64' ? 2.5 : 2;
    return arch === p.arch ? (tag.startsWith('musllinux') ? 2.8 : 3) : 0;
  }
  return 0;
}

function pythonFits(tags: readonly string[], abi: readonly string[], python: string | undefined): boolean {
  const [major, minor] = (python ?? '3').split('.');
  return tags.some((t) => {
    const m = /^(py|cp|pp)(\d)(\d*)$/.exec(t);
    if (!m) return false;
    if (m[2] !== major) return false;
    if (m[1] === 'py' || minor === undefined || m[3] === '') return true;
    // cp39 with abi3 runs on 3.9 and later; otherwise the minor version must match.
    return abi.includes('abi3') ? Number(m[3]) <= Number(minor) : m[3] === minor;
  });
}

/** A `py3-none-…` wheel: no interpreter version and no ABI, so it runs on every Python 3. */
function runsOnAnyPython3(dist: DistFile): boolean {
  return dist.python.some((t) => t === 'py3') && dist.abi.every((a) => a === 'none');
}

export interface Choice<T> {
  readonly file: T;
  /** Why it was chosen, for the page: "Windows (64-bit) wheel", "source". */
  readonly reason: string;
  /** Equally likely files when the platform cannot be told apart (a Mac whose browser hides its CPU). */
  readonly alternatives?: readonly { readonly file: T; readonly reason: string }[];
  /** Why there are alternatives, for the page. */
  readonly note?: string;
}

/**
 * The best file of a release for a platform: a wheel built for it, else a
 * pure-Python wheel, else the sdist. For a browser, which does not say its
 * Python, a version-specific wheel (`cp312-…`) loses to a pure one; a
 * `py3-none-<platform>` wheel does not. Undefined when nothing fits.
 */
export function chooseFile<T extends { filename: string }>(files: readonly T[], platform: Platform): Choice<T> | undefined {
  const scored: { file: T; score: number; reason: string; arch?: string }[] = [];
  for (const file of files) {
    const dist = parseFilename(file.filename);
    if (!dist) continue;
    let score = 0;
    let reason = 'source distribution (builds on any platform)';
    if (dist.kind === 'sdist') {
      score = 0.5;
    } else if (pythonFits(dist.python, dist.abi, platform.python)) {
      score = Math.max(0, ...dist.platforms.map((t) => platformFit(t, platform)));
      const pure = dist.platforms.includes('any') && score === 1;
      // A browser does not say which Python it will meet: a pure-Python wheel runs on any, a cp310 wheel on
      // one. A py3-none wheel built for this platform runs on any Python 3 too, and fits better than pure.
      if (platform.python === undefined) {
        if (pure) score = 4;
        else if (score > 0 && runsOnAnyPython3(dist)) score += 4;
      }
      reason = pure ? 'pure-Python wheel (any platform)' : `wheel for ${describePlatform(platform)}`;
    }
    const arch = /^macosx_\d+_\d+_(x86_64|arm64)$/.exec(dist.platforms.find((t) => t.startsWith('macosx_')) ?? '')?.[1];
    if (score > 0) scored.push({ file, score, reason, ...(arch ? { arch } : {}) });
  }
  const best = scored.reduce<(typeof scored)[number] | undefined>((b, s) => (!b || s.score > b.score ? s : b), undefined);
  if (!best) return undefined;
  if (platform.os === 'macos' && platform.arch === 'unknown' && best.arch) {
    // Safari sends no client hints and says "Intel" on Apple silicon too: offer both, and say why.
    const other = scored.filter((s) => s.arch && s.arch !== best.arch).sort((a, b) => b.score - a.score)[0];
    if (other) {
      const label = (s: typeof best) =>
        s.arch === 'arm64' ? 'wheel for Apple silicon (arm64: M1 and later)' : 'wheel for Intel Macs (x86_64)';
      const [first, second] = best.arch === 'arm64' ? [best, other] : [other, best];
      return {
        file: first.file,
        reason: label(first),
        alternatives: [{ file: second.file, reason: label(second) }],
        note: 'Your browser does not say which processor your Mac has (Apple menu → About This Mac tells you).',
      };
    }
  }
  return { file: best.file, reason: best.reason };
}

/** "Windows (x86_64)", "macOS", "Linux (arm64)" or "your platform". */
export function describePlatform(p: Platform): string {
  const os = { windows: 'Windows', macos: 'macOS', linux: 'Linux', unknown: '' }[p.os];
  if (!os) return 'your platform';
  return p.arch === 'unknown' ? os : `${os} (${p.arch})`;
}
