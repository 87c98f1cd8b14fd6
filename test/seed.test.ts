import type { IndexDatabase } from '../package-index/schema.js';
import { expect } from 'chai';
import { seedIndex } from '../app/seed.js';
import { connect } from '../lib/database.js';
import { runBanyanAsync } from './support/cli.js';
import { services } from './support/services.js';

describe('banyan seed: a representative data set', function () {
  this.timeout(120_000);

  it('fills the index with a long tail and giants, yanked releases and pre-releases, with progress, and refuses to seed twice', async () => {
    const s = await services();
    const env = { DATABASE_URL: s.primaryUrl };
    const run = await runBanyanAsync(
      ['seed', '--projects', '60', '--giants', '1', '--giant-releases', '1200', '--seed', '7', '--prefix', 'sdcli'],
      { env },
    );
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stderr).to.match(
      /• seeding 60 projects and 1 giant of 1,200 releases \(seed 7\)\n(• [\d,]+ of [\d,]+ releases \(\d+ %\)\n)+/,
    );
    const summary = /^Seeded 61 projects, ([\d,]+) releases \(([\d,]+) yanked\) and ([\d,]+) files in [\d.]+ s\.\nGiants: (\S+);/.exec(
      run.stdout,
    );
    expect(summary, run.stdout).to.not.equal(null);
    const db = connect<IndexDatabase>(s.primaryUrl, { max: 1 });
    try {
      const counts = await db
        .selectFrom('projects')
        .innerJoin('releases', 'releases.project_id', 'projects.id')
        .select((eb) => [
          eb.fn.countAll<string>().as('releases'),
          eb.fn.sum<string>(eb.cast<number>('yanked', 'integer')).as('yanked'),
          eb.fn.sum<string>(eb.cast<number>('is_prerelease', 'integer')).as('pre'),
        ])
        .where('projects.normalized_name', 'like', 'sdcli-%')
        .executeTakeFirstOrThrow();
      expect(Number(counts.releases)).to.equal(Number(summary![1]!.replace(/,/g, '')));
      expect(Number(counts.yanked))
        .to.equal(Number(summary![2]!.replace(/,/g, '')))
        .and.to.be.above(0);
      expect(Number(counts.pre), 'pre-releases among the versions').to.be.above(0);
      const giant = await db
        .selectFrom('projects')
        .innerJoin('releases', 'releases.project_id', 'projects.id')
        .innerJoin('files', 'files.release_id', 'releases.id')
        .select((eb) => [eb.fn.count<string>('releases.id').distinct().as('releases'), eb.fn.countAll<string>().as('files')])
        .where('projects.normalized_name', '=', summary![4]!)
        .executeTakeFirstOrThrow();
      expect([Number(giant.releases), Number(giant.files)]).to.deep.equal([1200, 6000]);
      const sizes = (
        await db
          .selectFrom('projects')
          .innerJoin('releases', 'releases.project_id', 'projects.id')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('projects.normalized_name', 'like', 'sdcli-%')
          .where('projects.normalized_name', '<>', summary![4]!)
          .groupBy('projects.id')
          .execute()
      )
        .map((r) => Number(r.n))
        .sort((a, b) => b - a);
      expect(sizes[0], 'a long tail: the largest ordinary project has many releases…').to.be.above(100);
      expect(sizes[Math.floor(sizes.length / 2)], '…and the median a fraction of that').to.be.below(sizes[0]! / 5);
    } finally {
      await db.destroy();
    }
    const again = await runBanyanAsync(['seed', '--projects', '1', '--giants', '0', '--prefix', 'sdcli'], { env });
    expect(again.status).to.equal(1);
    expect(again.stderr.trim().split('\n').at(-1)).to.match(
      /^banyan: projects named sdcli-… already exist \(sdcli-[a-z0-9-]+\) \(seed into a fresh stack, or choose another --prefix\)$/,
    );
    const bad = await runBanyanAsync(['seed', '--projects', 'many'], { env });
    expect([bad.status, bad.stderr]).to.deep.equal([
      2,
      'banyan: --projects must be a whole number from 0 to 1,000,000, not "many" (see banyan seed --help)\n',
    ]);
  });

  it('gives the same data set for the same seed, and another for another seed', async () => {
    const s = await services();
    const db = connect<IndexDatabase>(s.primaryUrl, { max: 1 });
    const shape = async (prefix: string) =>
      (
        await db
          .selectFrom('projects')
          .innerJoin('releases', 'releases.project_id', 'projects.id')
          .select(['projects.name', 'releases.version', 'releases.yanked'])
          .where('projects.normalized_name', 'like', `${prefix}-%`)
          .orderBy('releases.id')
          .execute()
      ).map((r) => `${r.name.slice(prefix.length)} ${r.version} ${r.yanked}`);
    try {
      for (const [prefix, seed] of [
        ['sda', 3],
        ['sdb', 3],
        ['sdc', 4],
      ] as const)
        await seedIndex(db, { projects: 30, giants: 0, seed, prefix });
      const [a, b, c] = [await shape('sda'), await shape('sdb'), await shape('sdc')];
      expect(a.length).to.be.above(100);
      expect(b).to.deep.equal(a);
      expect(c).to.not.deep.equal(a);
    } finally {
      await db.destroy();
    }
  });
});
