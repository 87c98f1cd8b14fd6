/**
 * The attacks of `npm run chaos -- --only attacks`: what one client can try
 * against `npm start` without breaking in, each with the invariant that says
 * it failed. Their tools (slow bodies, a form bomb, RSS sampling) are also
 * used by the tests and by `npm run chaos -- --only "slow bodies"` for the
 * numbers the README gives.
 */

import type { IndexDatabase } from '../package-index/schema.js';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Agent, request as undiciRequest } from 'undici';
import { addUser } from '../package-index/accounts.js';
import { connect as connectDb } from '../lib/database.js';
import type { ChaosContext, ChaosRow, Scenario } from './suite.js';
import { healthy, proxyServed, setMode, sleep } from './suite.js';

/**
 * The slow-body attack of issue 22: each connection sends `POST /pypi/` headers with
 * `Content-Length: 99999`, then one body byte every 2 s, from the loopback addresses given in turn.
 * Returns each connection's first answer line ('' while none came).
 */
export function slowBodies(url: string, count: number, addresses: readonly string[]): { answers: string[]; stop(): void } {
  const { hostname, port } = new URL(url);
  const answers: string[] = Array.from({ length: count }, () => '');
  const sockets: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect({ host: hostname, port: Number(port), localAddress: addresses[i % addresses.length] });
    sockets.push(socket);
    socket.on('error', () => {
      answers[i] ||= 'reset';
    });
    socket.on('data', (d) => {
      answers[i] ||= String(d).split('\r\n')[0]!;
    });
    socket.on('connect', () => {
      socket.write('POST /pypi/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 99999\r\n\r\n');
    });
  }
  const drip = setInterval(() => {
    for (const s of sockets) if (s.writable) s.write('a');
  }, 2_000);
  return {
    answers,
    stop: () => {
      clearInterval(drip);
      for (const s of sockets) s.destroy();
    },
  };
}

/** Other clients' legacy pages meanwhile: `n` GETs of `/`, one every 150 ms, each given at most 5 s (a failure counts as 5 s). */
export async function othersLatencies(url: string, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    try {
      const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(5_000) });
      await res.text();
      times.push(res.status === 200 ? performance.now() - t0 : 5_000);
    } catch {
      times.push(5_000);
    }
    await sleep(150);
  }
  return times;
}

/** The `p`th percentile (nearest rank) of ascending `sorted`. */
export const percentile = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

/** A process's resident memory, in bytes (0 once it is gone). */
export function rssBytes(pid: number): number {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('VmRSS:'))!;
    return Number(/(\d+)/.exec(line)![1]) * 1024;
  } catch {
    return 0;
  }
}

/**
 * A chunked multipart upload form to `/legacy/` (no Content-Length), written with backpressure:
 * text fields by name and size. Resolves with the status and reason phrase, or `reset` when the
 * connection was cut before an answer.
 */
export function sendForm(
  url: string,
  auth: string,
  fields: { name: string; bytes: number }[],
): Promise<{ status: number | 'reset'; message: string }> {
  const boundary = '----banyan-attack';
  return new Promise((resolve) => {
    let settled = false;
    const finish = (status: number | 'reset', message: string) => {
      if (!settled) {
        settled = true;
        resolve({ status, message });
      }
    };
    const req = request(
      `${url}/legacy/`,
      {
        method: 'POST',
        headers: { authorization: auth, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
      },
      (res) => {
        finish(res.statusCode!, res.statusMessage ?? '');
        res.resume();
      },
    );
    req.on('error', () => finish('reset', ''));
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let field = 0;
    let left = -1;
    const pump = () => {
      while (!settled && field < fields.length) {
        if (left < 0) {
          left = fields[field]!.bytes;
          if (!req.write(`--${boundary}\r\nContent-Disposition: form-data; name="${fields[field]!.name}"\r\n\r\n`))
            return void req.once('drain', pump);
        }
        const n = Math.min(left, chunk.length);
        left -= n;
        const more = req.write(n === chunk.length ? chunk : chunk.subarray(0, n));
        if (left === 0) {
          req.write('\r\n');
          field++;
          left = -1;
        }
        if (!more) return void req.once('drain', pump);
      }
      if (!settled) req.end(`--${boundary}--\r\n`);
    };
    pump();
  });
}

/** The form of issue 22: 150 text fields of 4 MiB each, 600 MiB in all. */
export const FORM_BOMB = Array.from({ length: 150 }, (_, i) => ({ name: `field${i}`, bytes: 4 * 1024 * 1024 - 1 }));

/** `count` form bombs at once against `url` while `pids` are sampled every 20 ms: the answers, and each process's RSS before and at its peak. */
export async function formBombs(url: string, auth: string, count: number, pids: readonly number[]) {
  const before = pids.map(rssBytes);
  const peak = [...before];
  const sample = () =>
    pids.forEach((pid, i) => {
      peak[i] = Math.max(peak[i]!, rssBytes(pid));
    });
  const sampler = setInterval(sample, 20);
  try {
    const answers = await Promise.all(Array.from({ length: count }, () => sendForm(url, auth, FORM_BOMB)));
    sample();
    return { answers, before, peak };
  } finally {
    clearInterval(sampler);
  }
}

/** Sends raw bytes (no client library normalizes them) and resolves with the whole answer as text ('' when none came). */
export function rawExchange(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let data = '';
    socket.setTimeout(5_000, () => {
      socket.destroy();
      resolve(data);
    });
    socket.on('data', (d) => {
      data += d;
    });
    socket.on('error', () => resolve(data));
    socket.on('end', () => resolve(data));
    socket.write(bytes);
  });
}

const MB = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
const ms = (n: number) => `${n.toFixed(1)} ms`;

/** A row of the table for an attack: `requests` sent, `failures` that got through; the proxy must have served throughout. */
function attackRow(
  ctx: ChaosContext,
  scenario: string,
  since: { pid: number | null | undefined; output: number },
  r: { requests: number; failures: number; broken: string[]; notes: string },
): ChaosRow {
  const proxyAlive = proxyServed(ctx, since.pid, since.output);
  const broken = proxyAlive ? r.broken : [...r.broken, 'the proxy process exited'];
  return {
    scenario,
    requests: r.requests,
    failures: r.failures,
    fallbacks: 0,
    firstFallbackMs: null,
    writesSent: 0,
    writesAcknowledged: 0,
    stored: 0,
    lost: 0,
    duplicated: 0,
    proxyAlive,
    broken,
    notes: r.notes,
  };
}

/** An attack scenario: `run` gets the proxy's URL and returns what went through, judged by its invariant. */
function attack(
  name: string,
  run: (ctx: ChaosContext, proxy: string) => Promise<{ requests: number; failures: number; broken: string[]; notes: string }>,
): Scenario {
  return {
    name,
    run: async (ctx) => {
      await healthy(ctx);
      const since = { pid: ctx.stack.current().pids['proxy'], output: ctx.stack.output().length };
      return attackRow(ctx, name, since, await run(ctx, ctx.stack.current().proxy));
    },
  };
}

/**
 * `count` connections trickle POST bodies to a legacy route, from `addresses`; other clients'
 * legacy pages must stay under 1 s (p99), and every trickling connection is answered 408.
 */
function slowBodyAttack(count: number, addresses: readonly string[]): Scenario {
  return attack(`attacks: slow bodies ×${count}`, async (_ctx, proxy) => {
    const trickle = slowBodies(proxy, count, addresses);
    try {
      await sleep(1_000);
      const sorted = (await othersLatencies(proxy, 30)).sort((a, b) => a - b);
      const [p50, p99] = [percentile(sorted, 50), percentile(sorted, 99)];
      const deadline = Date.now() + 30_000;
      while (trickle.answers.some((a) => a === '') && Date.now() < deadline) await sleep(250);
      const counts = new Map<string, number>();
      for (const a of trickle.answers) counts.set(a || 'no answer', (counts.get(a || 'no answer') ?? 0) + 1);
      const not408 = count - (counts.get('HTTP/1.1 408 Request Timeout') ?? 0);
      const broken: string[] = [];
      if (p99 >= 1_000) broken.push(`other clients' GET / p99 ${ms(p99)} (limit 1 s)`);
      if (not408 > 0)
        broken.push(`${not408} trickling connections not answered 408: ${[...counts].map(([a, n]) => `${n} × ${a}`).join(', ')}`);
      return {
        requests: count,
        failures: not408,
        broken,
        notes: `other clients' GET / through the proxy: p50 ${ms(p50)}, p99 ${ms(p99)} (30 requests)`,
      };
    } finally {
      trickle.stop();
    }
  });
}

/** With POST /pypi retired, every spelling of it is retired (a final slash) or refused (a fragment); none reaches legacy. */
const retiredSpellings = attack('attacks: retired spellings', async (ctx, proxy) => {
  const expected: [string, string][] = [
    ['/pypi', '410'],
    ['/pypi/', '410'],
    ['/pypi#', '400'],
    ['/pypi/#x', '400'],
    ['/pypi?:action=x#y', '400'],
  ];
  await setMode(ctx, 'legacy.xmlrpc', 'retired', 'chaos: retired spellings');
  const wrong: string[] = [];
  try {
    await sleep(500);
    for (const [target, status] of expected) {
      const answer = await rawExchange(
        proxy,
        `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      const got = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 'no answer';
      if (got !== status) wrong.push(`POST ${target} → ${got} (want ${status})`);
    }
  } finally {
    await setMode(ctx, 'legacy.xmlrpc', 'legacy', 'chaos: retired spellings over');
  }
  return { requests: expected.length, failures: wrong.length, broken: wrong, notes: 'final slash: 410 as retired; a fragment: 400' };
});

/**
 * Four form bombs at once (150 fields × 4 MiB, chunked, with a valid token) through the proxy to the
 * app: each is answered 413 naming the budget, and no app instance's RSS grows by more than 150 MB (the
 * 2.4 GB sent are never held). Growth, not a ceiling: after the scenarios before it, an instance's
 * baseline is whatever its heap grew to, more on Node 24, whose collector runs later, than on Node 20.
 */
const formBomb = attack('attacks: form bomb against the app', async (ctx, proxy) => {
  const pids = Object.entries(ctx.stack.current().pids)
    .filter(([name, pid]) => /^app-\d+$/.test(name) && pid)
    .map(([, pid]) => pid!);
  const auth = `Basic ${Buffer.from(`__token__:${ctx.uploadToken}`).toString('base64')}`;
  const { answers, before, peak } = await formBombs(proxy, auth, 4, pids);
  const broken: string[] = [];
  const wrong = answers.filter((a) => a.status !== 413 || !a.message.includes('over 8 MiB'));
  if (wrong.length)
    broken.push(`${wrong.length} of 4 not answered 413 (fields over 8 MiB): ${wrong.map((a) => `${a.status} ${a.message}`).join('; ')}`);
  const grown = peak.map((p, i) => p - before[i]!);
  const over = grown.filter((g) => g > 150 * 1024 * 1024);
  if (over.length) broken.push(`app RSS grew by ${over.map(MB).join(', ')} (limit 150 MB)`);
  return {
    requests: 4,
    failures: wrong.length,
    broken,
    notes: `app RSS under four concurrent 600 MiB forms: ${pids.map((_, i) => `${MB(before[i]!)} → peak ${MB(peak[i]!)}`).join(', ')}`,
  };
});

/** A Host or X-Forwarded-Host a client chose never lands in a cacheable answer that does not vary on it. */
const hostInUrls = attack('attacks: Host header in cacheable URLs', async (ctx, proxy) => {
  const paths = [`/pypi/${ctx.project}/json`, `/simple/${ctx.project}/`, `/project/${ctx.project}/`, `/pypi/${ctx.project}`];
  const leaks: string[] = [];
  for (const path of paths) {
    for (const header of ['Host: evil.example', 'Host: x\r\nX-Forwarded-Host: evil.example']) {
      const answer = await rawExchange(
        proxy,
        `GET ${path} HTTP/1.1\r\n${header}\r\nAccept: application/json, text/html\r\nConnection: close\r\n\r\n`,
      );
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      const varies = /^vary:.*\bhost\b/im.test(head);
      if (/^HTTP\/1\.1 200/.test(head) && body.includes('evil.example') && !(header.startsWith('Host:') && varies)) {
        leaks.push(`${path} with ${header.replace('\r\n', ' + ')}: evil.example in the body${varies ? '' : ', no Vary: Host'}`);
      }
    }
  }
  return {
    requests: paths.length * 2,
    failures: leaks.length,
    broken: leaks,
    notes: 'no client-chosen host in an answer that does not vary on it',
  };
});

/** Hand-made banyan_sid cookies on a 50 % canary pick no side: each lands where a request without one does, and gets a real one. */
const forgedSid = attack('attacks: forged banyan_sid', async (ctx, proxy) => {
  const path = `/project/${ctx.project}/`;
  const side = async (cookie?: string) => {
    const res = await fetch(`${proxy}${path}`, { headers: cookie ? { cookie } : {} });
    await res.arrayBuffer();
    return { legacy: res.headers.has('x-legacy-read-from'), minted: /banyan_sid=/.test(res.headers.get('set-cookie') ?? '') };
  };
  const forged = Array.from({ length: 40 }, (_, i) => {
    const bucket = i * 250;
    return i % 2 === 0 ? `banyan_sid=${bucket}.AAAAAAAAAAAAAAAA` : `banyan_sid=${bucket}.AAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBB`;
  });
  await setMode(ctx, 'project.page', 'canary', 'chaos: forged sessions', 50);
  const steered: string[] = [];
  try {
    await sleep(500);
    const baseline = await side();
    for (const cookie of forged) {
      const got = await side(cookie);
      if (got.legacy !== baseline.legacy || !got.minted)
        steered.push(`${cookie} → ${got.legacy ? 'legacy' : 'new'}${got.minted ? '' : ', no session minted'}`);
    }
  } finally {
    await setMode(ctx, 'project.page', 'legacy', 'chaos: forged sessions over');
  }
  return {
    requests: forged.length,
    failures: steered.length,
    broken: steered,
    notes: "40 forged sessions, buckets 0-9750: each on the address's side, a signed one minted",
  };
});

/**
 * Password guesses through the proxy: a flood on one account from one address, a spray over
 * many accounts from another. At most 10 guesses per account and 50 per address are checked;
 * the rest get 429 with Retry-After, the right password too; other accounts and addresses log in.
 */
const loginFlood = attack('attacks: login flood', async (ctx, proxy) => {
  const db = connectDb<IndexDatabase>(ctx.stack.current().primary, { max: 1, name: 'banyan-chaos' });
  try {
    for (const name of ['chaos-victim', 'chaos-bystander']) await addUser(db, name, undefined, `${name} password`);
  } finally {
    await db.destroy();
  }
  const from = (localAddress: string) => new Agent({ localAddress });
  const login = async (agent: Agent | undefined, user: string, password: string) => {
    const res = await undiciRequest(`${proxy}/manage/projects`, {
      method: 'POST',
      dispatcher: agent,
      body: 'name=not+a+name!',
      headers: {
        authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
    });
    await res.body.dump();
    return { status: res.statusCode, retryAfter: res.headers['retry-after'] };
  };
  const flooder = from('127.0.0.7');
  const sprayer = from('127.0.0.8');
  const elsewhere = from('127.0.0.9');
  const broken: string[] = [];
  const tally = (answers: { status: number; retryAfter: unknown }[]) => {
    const counts = new Map<number, number>();
    for (const a of answers) counts.set(a.status, (counts.get(a.status) ?? 0) + 1);
    return counts;
  };
  try {
    const flood: { status: number; retryAfter: unknown }[] = [];
    for (let i = 0; i < 100; i += 20)
      flood.push(...(await Promise.all(Array.from({ length: 20 }, (_, j) => login(flooder, 'chaos-victim', `guess ${i + j}`)))));
    const spray: { status: number; retryAfter: unknown }[] = [];
    for (let i = 0; i < 80; i += 20)
      spray.push(...(await Promise.all(Array.from({ length: 20 }, (_, j) => login(sprayer, `nobody-${i + j}`, 'Winter2026!')))));
    const f = tally(flood);
    const s = tally(spray);
    if ((f.get(403) ?? 0) > 10) broken.push(`${f.get(403)} guesses on one account were checked (limit 10)`);
    if ((s.get(403) ?? 0) > 50) broken.push(`${s.get(403)} guesses from one address were checked (limit 50)`);
    if ([...flood, ...spray].some((a) => a.status !== 403 && !(a.status === 429 && /^\d+$/.test(String(a.retryAfter))))) {
      broken.push(`answers other than 403 and 429 with Retry-After: flood ${[...f].join(' ')}, spray ${[...s].join(' ')}`);
    }
    const victim = await login(elsewhere, 'chaos-victim', 'chaos-victim password');
    if (victim.status !== 429)
      broken.push(`the flooded account with its right password answered ${victim.status}, not 429: the flood learnt something`);
    const sprayed = await login(sprayer, 'chaos-bystander', 'chaos-bystander password');
    if (sprayed.status !== 429) broken.push(`the spraying address with a right password answered ${sprayed.status}, not 429`);
    const bystander = await login(elsewhere, 'chaos-bystander', 'chaos-bystander password');
    if (bystander.status !== 400)
      broken.push(`another account from another address answered ${bystander.status}, not 400 (logged in, the name refused)`);
    return {
      requests: flood.length + spray.length + 3,
      failures: Math.max(0, (f.get(403) ?? 0) - 10) + Math.max(0, (s.get(403) ?? 0) - 50),
      broken,
      notes: `100 guesses on one account: ${f.get(403) ?? 0} checked, ${f.get(429) ?? 0} × 429; 80 over 80 accounts from one address: ${s.get(403) ?? 0} checked, ${s.get(429) ?? 0} × 429`,
    };
  } finally {
    await Promise.all([flooder.close(), sprayer.close(), elsewhere.close()]);
  }
});

/** The attacks, in the order they run: each leaves the stack as it found it. */
export const ATTACKS: readonly Scenario[] = [
  slowBodyAttack(140, ['127.0.0.2']),
  slowBodyAttack(1_000, ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']),
  retiredSpellings,
  formBomb,
  hostInUrls,
  forgedSid,
  loginFlood,
];
