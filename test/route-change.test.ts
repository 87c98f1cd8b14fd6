import { expect } from 'chai';
import { changeRoute, type Route } from '../routing/table/index.js';

describe('route changes: one rule, whoever asks (CLI, admin API, dashboard)', () => {
  const page: Route = {
    name: 'project.page',
    match: { path: '/project/:p/' },
    mode: 'new',
    fallback: true,
    timeouts: { headersMs: 5_000 },
  };

  it('keeps every field not mentioned, fallback included, across legacy and back', () => {
    const back = changeRoute(page, { mode: 'legacy' });
    expect(back).to.deep.equal({ ...page, mode: 'legacy' });
    expect(changeRoute(back, { mode: 'new' })).to.deep.equal(page);
  });

  it("keeps a canary's percent until told another, never picks one silently, and drops it outside canary", () => {
    expect(changeRoute(page, { mode: 'canary' })).to.not.have.property('percent');
    const canary = changeRoute(page, { mode: 'canary', percent: 5 });
    expect(canary.percent).to.equal(5);
    expect(changeRoute(canary, { percent: 25 }).percent).to.equal(25);
    expect(changeRoute(canary, { mode: 'new' })).to.not.have.property('percent');
  });

  it('gives a retired route a 410 answer unless told otherwise, and drops it when the route comes back', () => {
    const retired = changeRoute(page, { mode: 'retired' });
    expect(retired.retired).to.deep.equal({ status: 410, message: 'This feature has been retired.' });
    expect(changeRoute(page, { mode: 'retired', retired: { message: 'Use /simple/.' } }).retired).to.deep.equal({
      status: 410,
      message: 'Use /simple/.',
    });
    expect(changeRoute(retired, { mode: 'legacy' })).to.not.have.property('retired');
    const browned: Route = {
      ...page,
      mode: 'legacy',
      brownouts: [{ start: '2026-12-01T10:00:00Z', end: '2026-12-01T11:00:00Z' }],
      retired: { status: 410, message: 'soon' },
    };
    expect(changeRoute(browned, { mode: 'shadow' }).retired, 'brownouts still answer with it').to.deep.equal({
      status: 410,
      message: 'soon',
    });
  });

  it('keeps the service across legacy and back, changes it only when asked, and keeps fallback with it', () => {
    const files: Route = { ...page, service: 'files' };
    const back = changeRoute(files, { mode: 'legacy' });
    expect(back).to.deep.equal({ ...files, mode: 'legacy' });
    expect(changeRoute(back, { mode: 'canary', percent: 5 })).to.include({ service: 'files', fallback: true, percent: 5 });
    expect(changeRoute(page, { service: 'files' })).to.deep.equal({ ...page, service: 'files' });
    expect(changeRoute(files, { service: 'app', mode: 'new' }).service).to.equal('app');
    expect(changeRoute(page, { mode: 'shadow' }), 'no service is invented').to.not.have.property('service');
    expect(changeRoute(files, { fallback: 'app' })).to.include({ service: 'files', fallback: 'app' });
  });

  it('turns fallback off only when asked', () => {
    expect(changeRoute(page, { fallback: false }).fallback).to.equal(false);
    expect(changeRoute(page, { percent: 5 }).fallback).to.equal(true);
  });
});
