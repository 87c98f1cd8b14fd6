import type { IndexDatabase } from '../../package-index/schema.js';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildWheel } from '../../chaos/wheel.js';
import { addUser, createToken } from '../../package-index/accounts.js';
import { connect } from '../../lib/database.js';

/** Writes wheels (one per tag, e.g. `py3-none-any`) and an sdist with Python's zipfile/tarfile; returns their paths. */
const BUILD = String.raw`
import base64, hashlib, io, os, sys, tarfile, zipfile
name, version, outdir, *tags = sys.argv[1:]
dist = name.replace('-', '_').replace('.', '_')
meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: Test package {name}\nRequires-Python: >=3.7\n\n"
out = []
for tag in tags:
    if tag == 'sdist':
        path = os.path.join(outdir, f"{dist}-{version}.tar.gz")
        with tarfile.open(path, 'w:gz') as t:
            for rel, text in ((f"{dist}-{version}/PKG-INFO", meta), (f"{dist}-{version}/{dist}/__init__.py", f"VERSION = '{version}'\n")):
                data = text.encode(); info = tarfile.TarInfo(rel); info.size = len(data); t.addfile(info, io.BytesIO(data))
        out.append(path); continue
    path = os.path.join(outdir, f"{dist}-{version}-{tag}.whl")
    files = {f"{dist}/__init__.py": f"VERSION = '{version}'\n", f"{dist}-{version}.dist-info/METADATA": meta,
             f"{dist}-{version}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: banyan-test\nRoot-Is-Purelib: true\nTag: {tag}\n"}
    record = []
    with zipfile.ZipFile(path, 'w') as z:
        for rel, text in files.items():
            data = text.encode(); z.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
            record.append(f"{rel},sha256={digest},{len(data)}")
        rec = f"{dist}-{version}.dist-info/RECORD"; record.append(f"{rec},,"); z.writestr(rec, "\n".join(record) + "\n")
    out.append(path)
print("\n".join(out))
`;

export async function buildDists(dir: string, name: string, version: string, tags: string[]): Promise<string[]> {
  const { stdout } = await run('python3', ['-c', BUILD, name, version, dir, ...tags]);
  return stdout.trim().split('\n');
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop (the servers under test live in this process). */
export function run(
  program: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; allowFailure?: boolean; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += String(d);
    });
    child.stderr.on('data', (d) => {
      stderr += String(d);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const result = { code: code ?? -1, stdout, stderr };
      if (code !== 0 && !options.allowFailure) reject(new Error(`${program} ${args.join(' ')} exited ${code}:\n${stdout}\n${stderr}`));
      else resolve(result);
    });
  });
}

let accounts = 0;

/** A fresh user with a password and an API token, created on the primary. */
export async function newUploader(primaryUrl: string): Promise<{ username: string; password: string; token: string }> {
  const db = connect<IndexDatabase>(primaryUrl, { max: 1 });
  try {
    const username = `uploader-${process.pid}-${++accounts}`;
    const password = `pw-${username}-secret`;
    await addUser(db, username, `${username}@example.org`, password);
    const { token } = await createToken(db, username, 'tests');
    return { username, password, token };
  } finally {
    await db.destroy();
  }
}

export function basicAuth(user: string, secret: string): string {
  return `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`;
}

/** The multipart form twine sends for a file, as a FormData; `overrides` replace or drop (undefined) fields. */
export function uploadForm(
  path: string,
  fields: { name: string; version: string; filetype?: string; pyversion?: string },
  overrides: Record<string, string | undefined> = {},
  contents?: Buffer,
): FormData {
  const data = contents ?? readFileSync(path);
  const filename = path.slice(path.lastIndexOf('/') + 1);
  const isWheel = filename.endsWith('.whl');
  const base: Record<string, string | undefined> = {
    ':action': 'file_upload',
    protocol_version: '1',
    name: fields.name,
    version: fields.version,
    filetype: fields.filetype ?? (isWheel ? 'bdist_wheel' : 'sdist'),
    pyversion: fields.pyversion ?? (isWheel ? 'py3' : 'source'),
    metadata_version: '2.1',
    summary: `Test package ${fields.name}`,
    requires_python: '>=3.7',
    sha256_digest: createHash('sha256').update(readFileSync(path)).digest('hex'),
    ...overrides,
  };
  const form = new FormData();
  for (const [k, v] of Object.entries(base)) if (v !== undefined) form.append(k, v);
  form.append('requires_dist', 'requests>=2');
  form.append('requires_dist', 'idna');
  form.append('content', new Blob([data]), join(filename));
  return form;
}

/** Uploads a wheel built in memory (chaos/wheel.ts, `tag` py3-none-any unless said) through `base` as twine does; returns its file name. */
export async function uploadWheel(base: string, token: string, project: string, version: string, tag?: string): Promise<string> {
  const wheel = buildWheel(project, version, randomBytes(256), tag);
  const form = new FormData();
  for (const [k, v] of Object.entries({
    ':action': 'file_upload',
    protocol_version: '1',
    name: project,
    version,
    filetype: 'bdist_wheel',
    pyversion: 'py3',
    metadata_version: '2.1',
    summary: `${project} for the tests`,
    sha256_digest: createHash('sha256').update(wheel.bytes).digest('hex'),
  }))
    form.append(k, v);
  form.append('content', new Blob([wheel.bytes]), wheel.filename);
  const uploaded = await fetch(`${base}/legacy/`, {
    method: 'POST',
    body: form,
    headers: { authorization: basicAuth('__token__', token) },
  });
  if (uploaded.status !== 200) throw new Error(`uploading ${wheel.filename}: ${uploaded.status} ${await uploaded.text()}`);
  return wheel.filename;
}
