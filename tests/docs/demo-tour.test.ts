import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { startDemo, type DemoRun } from '../harness/demo-run.js';

/**
 * The README's demo tour, run as written: the shell block after `<!-- demo-tour -->` is given to bash in the demo's
 * own directory (where `. data/demo-keys.env` finds the keys), against the demo as `npm run demo` runs it. Its dates
 * are computed, so it works at any time of day; only the demo's second-notice minute is 0 here, so it ends in seconds.
 */
const readme = readFileSync('README.md', 'utf8');
const tour = /<!-- demo-tour -->\n```sh\n([\s\S]*?)\n```/.exec(readme)?.[1];
let d: DemoRun | undefined;
afterAll(async () => {
  await d?.gw.stop();
});

describe("the README's demo tour", () => {
  it('is in the README', () => {
    expect(tour).toBeDefined();
    expect(tour).toContain('. data/demo-keys.env');
    expect(tour).toMatch(/date -u -d '\+2 hours'/);
  });

  it('runs as written: the plan is approved and its order reaches done', async () => {
    d = await startDemo('demo-tour-readme', { reconnectEveryMs: 0, planEveryMs: 0 });
    const run = spawnSync('bash', ['--norc', '--noprofile', '-e', '-o', 'pipefail', '-c', tour!], { cwd: d.dir.dir, encoding: 'utf8', timeout: 120_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines).toContain('approved');
    const last = JSON.parse(lines.at(-1)!);
    expect(last).toMatchObject({ status: 'approved', summary: { done: 1 }, items: [{ meterId: 'SIM-000002', state: 'done', why: 'read-back shows the relay disconnected' }] });
  }, 180_000);
});
