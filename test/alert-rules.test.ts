import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promtool } from './support/promtool.js';

const RULES_DIR = fileURLToPath(new URL('../deploy/prometheus/', import.meta.url));

describe('the shipped alerting rules (deploy/prometheus/rules.yml)', () => {
  it('pass promtool check rules', async function () {
    const { code, output } = await promtool(this, ['check', 'rules', 'rules.yml'], '', RULES_DIR);
    expect(code, output).to.equal(0);
    expect(output).to.match(/SUCCESS: \d+ rules found/);
  });

  it('each alert fires on the series it is for and not on their neighbours (promtool test rules)', async function () {
    const { code, output } = await promtool(this, ['test', 'rules', 'rules.test.yml'], '', RULES_DIR);
    expect(code, output).to.equal(0);
  });

  it('every alert has a unit test', () => {
    const alerts = [...readFileSync(join(RULES_DIR, 'rules.yml'), 'utf8').matchAll(/^\s*- alert: (\w+)/gm)].map((m) => m[1]);
    const tested = new Set([...readFileSync(join(RULES_DIR, 'rules.test.yml'), 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]));
    expect(alerts.length).to.be.at.least(7);
    expect(
      alerts.filter((a) => !tested.has(a)),
      'alerts without a test in rules.test.yml',
    ).to.deep.equal([]);
  });
});
