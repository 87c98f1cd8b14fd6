import { expect } from 'chai';
import { loadSettings, required, type StackFile } from '../lib/config.js';

const stack: StackFile = {
  proxy: 'http://127.0.0.1:8080',
  admin: 'http://127.0.0.1:9090',
  app: 'http://127.0.0.1:8081',
  legacy: 'http://127.0.0.1:8082',
  primary: 'postgres://u:p@127.0.0.1:5432/banyan',
  replicas: ['postgres://u:p@127.0.0.1:5433/banyan'],
  redis: null,
  adminToken: 'token-from-stack',
};

describe('settings', () => {
  it('reads the environment', () => {
    const s = loadSettings(
      {
        DATABASE_URL: 'postgresql://a@db:5432/x',
        DATABASE_REPLICA_URLS: 'postgres://a@r1/x, postgres://a@r2/x',
        REDIS_URL: 'redis://127.0.0.1:6379',
        PORT: '8000',
        BANYAN_SECRET: 'a-secret-of-enough-length',
      },
      undefined,
    );
    expect(s.databaseUrl).to.equal('postgresql://a@db:5432/x');
    expect(s.replicaUrls).to.deep.equal(['postgres://a@r1/x', 'postgres://a@r2/x']);
    expect(s.redisUrl).to.equal('redis://127.0.0.1:6379');
    expect(s.port).to.equal(8000);
    expect(s.adminHost).to.equal('127.0.0.1');
    expect(s.stackFile).to.equal(undefined);
  });

  it('falls back to the running npm start stack for unset variables', () => {
    const s = loadSettings({}, stack);
    expect(s.databaseUrl).to.equal(stack.primary);
    expect(s.replicaUrls).to.deep.equal(stack.replicas);
    expect(s.legacyUrl).to.equal(stack.legacy);
    expect(s.adminToken).to.equal('token-from-stack');
    expect(s.redisUrl).to.equal(undefined);
    expect(s.stackFile).to.match(/stack\.json$/);
  });

  it('prefers the environment over the stack file', () => {
    const s = loadSettings({ DATABASE_URL: 'postgres://other/db', DATABASE_REPLICA_URLS: '' }, stack);
    expect(s.databaseUrl).to.equal('postgres://other/db');
    expect(s.replicaUrls).to.deep.equal(stack.replicas);
  });

  it('rejects malformed values, naming the variable', () => {
    expect(() => loadSettings({ DATABASE_URL: 'not a url' }, undefined)).to.throw('DATABASE_URL is not a URL: "not a url"');
    expect(() => loadSettings({ DATABASE_URL: 'mysql://x/y' }, undefined)).to.throw(
      'DATABASE_URL must start with postgres: or postgresql:',
    );
    expect(() => loadSettings({ DATABASE_REPLICA_URLS: 'postgres://a/b,http://c' }, undefined)).to.throw('DATABASE_REPLICA_URLS (entry 2)');
    expect(() => loadSettings({ PORT: '80a' }, undefined)).to.throw('PORT must be a port number from 0 to 65535, not "80a"');
    expect(() => loadSettings({ ADMIN_PORT: '70000' }, undefined)).to.throw('ADMIN_PORT must be a port number');
    expect(() => loadSettings({ BANYAN_AUTOPILOT_TICK: '0' }, undefined)).to.throw('BANYAN_AUTOPILOT_TICK must be at least 50ms, not "0"');
    expect(() => loadSettings({ BANYAN_AUTOPILOT_TICK: '1s', BANYAN_AUTOPILOT_LEASE: '1500ms' }, undefined)).to.throw(
      'BANYAN_AUTOPILOT_LEASE (1500 ms) must be at least twice BANYAN_AUTOPILOT_TICK (1000 ms)',
    );
    expect(() => loadSettings({ BANYAN_AUTOPILOT_WEBHOOK: 'ftp://hooks' }, undefined)).to.throw(
      'BANYAN_AUTOPILOT_WEBHOOK must be an http:// or https:// URL, not "ftp://hooks"',
    );
    expect(() => loadSettings({ REDIS_URL: 'http://x' }, undefined)).to.throw('REDIS_URL must start with redis: or rediss:');
    expect(() => loadSettings({ BANYAN_PROMETHEUS_URL: 'ftp://prom' }, undefined)).to.throw(
      'BANYAN_PROMETHEUS_URL must start with http: or https:',
    );
    expect(loadSettings({ BANYAN_PROMETHEUS_URL: 'http://127.0.0.1:9091' }, undefined).prometheusUrl).to.equal('http://127.0.0.1:9091');
    expect(() => loadSettings({ BANYAN_SECRET: 'short' }, undefined)).to.throw('BANYAN_SECRET must be at least 16 characters');
  });

  it('says which variable a command needs and how to get it', () => {
    expect(() => required(undefined, 'DATABASE_URL', 'to reach the primary'))
      .to.throw('DATABASE_URL is not set; it is needed to reach the primary')
      .with.property('hint')
      .that.matches(/npm start/);
  });
});

describe('settings: the DB router', () => {
  it('reads durations, limits and the replica choice, with defaults', () => {
    expect(loadSettings({}, undefined).reads).to.deep.equal({
      monitorIntervalMs: 100,
      fenceWaitMs: 0,
      maxLagSeconds: 30,
      maxLagBytes: 64 * 1024 * 1024,
      maxPrimaryReads: undefined,
      choice: 'round-robin',
      resolveEveryMs: 10_000,
      answerTimeoutMs: 16_000,
    });
    expect([
      loadSettings({ BANYAN_DB_RESOLVE: 'off' }, undefined).reads.resolveEveryMs,
      loadSettings({ BANYAN_DB_RESOLVE: '30s' }, undefined).reads.resolveEveryMs,
    ]).to.deep.equal([0, 30_000]);
    expect(() => loadSettings({ BANYAN_DB_RESOLVE: '10ms' }, undefined)).to.throw('BANYAN_DB_RESOLVE must be at least 100ms, not 10ms');
    expect(() => loadSettings({ BANYAN_DB_RESOLVE: 'sometimes' }, undefined)).to.throw('BANYAN_DB_RESOLVE');
    expect(
      loadSettings(
        {
          BANYAN_READ_FENCE_WAIT: '50ms',
          BANYAN_MAX_REPLICA_LAG: '5s',
          BANYAN_MAX_PRIMARY_READS: '20',
          BANYAN_REPLICA_CHOICE: 'least-in-flight',
        },
        undefined,
      ).reads,
    ).to.deep.include({ fenceWaitMs: 50, maxLagSeconds: 5, maxPrimaryReads: 20, choice: 'least-in-flight' });
  });

  it("reads how request bodies are admitted, the upstream queue wait and a client's share, with defaults", () => {
    expect(loadSettings({}, undefined)).to.deep.include({
      bodyBufferBytes: 64 * 1024,
      bodyTimeoutMs: 10_000,
      bodyMinRate: 1024,
      upstreamQueueTimeoutMs: 5_000,
      clientSharePercent: 25,
    });
    expect(
      loadSettings(
        {
          BANYAN_BODY_BUFFER: '1MiB',
          BANYAN_BODY_TIMEOUT: '30s',
          BANYAN_BODY_MIN_RATE: '10KiB',
          BANYAN_UPSTREAM_QUEUE_TIMEOUT: '2s',
          BANYAN_CLIENT_SHARE: '50',
        },
        undefined,
      ),
    ).to.deep.include({
      bodyBufferBytes: 1024 * 1024,
      bodyTimeoutMs: 30_000,
      bodyMinRate: 10 * 1024,
      upstreamQueueTimeoutMs: 2_000,
      clientSharePercent: 50,
    });
    expect(() => loadSettings({ BANYAN_CLIENT_SHARE: '0' }, undefined)).to.throw(
      'BANYAN_CLIENT_SHARE must be a percentage from 1 to 100, not "0"',
    );
    expect(() => loadSettings({ BANYAN_BODY_TIMEOUT: '0s' }, undefined)).to.throw('BANYAN_BODY_TIMEOUT must be longer than 0');
    expect(() => loadSettings({ BANYAN_BODY_MIN_RATE: 'fast' }, undefined)).to.throw('BANYAN_BODY_MIN_RATE must be a size');
  });

  it('takes DATABASE_URL as a comma list of every server, checking each entry, and the role poll', () => {
    const s = loadSettings({ DATABASE_URL: 'postgres://a/db,postgres://b/db', BANYAN_ROLE_POLL: '250ms' }, undefined);
    expect([s.databaseUrl, s.rolePollMs]).to.deep.equal(['postgres://a/db,postgres://b/db', 250]);
    expect(loadSettings({}, undefined).rolePollMs).to.equal(1_000);
    expect(() => loadSettings({ DATABASE_URL: 'postgres://a/db,mysql://b/db' }, undefined)).to.throw(
      'DATABASE_URL (entry 2) must start with postgres: or postgresql:',
    );
    expect(() => loadSettings({ BANYAN_ROLE_POLL: '5ms' }, undefined)).to.throw('BANYAN_ROLE_POLL must be at least 10ms, not 5ms');
    expect(() => loadSettings({ BANYAN_ROLE_POLL: 'often' }, undefined)).to.throw('BANYAN_ROLE_POLL');
  });

  it('names the variable when a value is wrong', () => {
    expect(() => loadSettings({ BANYAN_REPLICA_CHOICE: 'random' }, undefined)).to.throw(
      'BANYAN_REPLICA_CHOICE must be round-robin or least-in-flight, not "random"',
    );
    expect(() => loadSettings({ BANYAN_MAX_PRIMARY_READS: 'lots' }, undefined)).to.throw(
      'BANYAN_MAX_PRIMARY_READS must be a whole number, not "lots"',
    );
    expect(() => loadSettings({ BANYAN_PIN_MODE: 'forever' }, undefined)).to.throw('BANYAN_PIN_MODE must be lsn or timed, not "forever"');
  });

  it('reads the read consistency (monotonic needs LSN pins) and how long a query waits for an answer', () => {
    expect(loadSettings({}, undefined).readConsistency).to.equal('read-your-writes');
    expect(loadSettings({ BANYAN_READ_CONSISTENCY: 'monotonic' }, undefined).readConsistency).to.equal('monotonic');
    expect(() => loadSettings({ BANYAN_READ_CONSISTENCY: 'strong' }, undefined)).to.throw(
      'BANYAN_READ_CONSISTENCY must be read-your-writes or monotonic, not "strong"',
    );
    expect(() => loadSettings({ BANYAN_READ_CONSISTENCY: 'monotonic', BANYAN_PIN_MODE: 'timed' }, undefined)).to.throw(
      'BANYAN_READ_CONSISTENCY=monotonic needs BANYAN_PIN_MODE=lsn',
    );
    expect(loadSettings({}, undefined).reads.answerTimeoutMs).to.equal(16_000);
    expect(loadSettings({ BANYAN_DB_ANSWER_TIMEOUT: '2s' }, undefined).reads.answerTimeoutMs).to.equal(2_000);
    expect(() => loadSettings({ BANYAN_DB_ANSWER_TIMEOUT: '5ms' }, undefined)).to.throw(
      'BANYAN_DB_ANSWER_TIMEOUT must be at least 100ms, not 5ms',
    );
  });
});
