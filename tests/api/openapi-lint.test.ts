import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * The served OpenAPI document passes `redocly lint` (config/redocly.yaml: the recommended rules), as a billing team's
 * client pipeline runs it: no errors, and no warnings but the ones accepted below, each for a reason.
 */
const ACCEPTED_WARNINGS: { ruleId: string; pointer: string; why: string }[] = [
  {
    ruleId: 'operation-4xx-response',
    pointer: '#/paths/~1healthz/get/responses',
    why: 'GET /healthz answers 200 or 503 only: it takes no key, no parameters and no body, and is not rate limited (a probe is never refused)',
  },
];

interface LintProblem {
  ruleId: string;
  severity: 'error' | 'warn';
  message: string;
  location: { pointer: string }[];
}

let f: GatewayFixture;
let dir: string;
beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'LINT-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }]);
  dir = mkdtempSync(join(tmpdir(), 'ml-openapi-lint-'));
}, 60_000);
afterAll(async () => {
  await f?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('OpenAPI lint', () => {
  it('`redocly lint` on the served document: 0 errors, and only the accepted warnings', async () => {
    const spec = (await f.http('GET', '/openapi.json', { key: null })).body;
    const file = join(dir, 'openapi.json');
    writeFileSync(file, JSON.stringify(spec, null, 2));
    const args = ['lint', '--config', 'config/redocly.yaml', file, '--format=json'];
    // No telemetry or update check from a test run.
    const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' };
    const stdout = await promisify(execFile)('node_modules/.bin/redocly', args, { env, maxBuffer: 64 * 1024 * 1024 }).then(
      (r) => r.stdout,
      // redocly exits 1 when it finds errors; its report is on stdout all the same.
      (err: { stdout?: string }) => err.stdout ?? '',
    );
    const report = JSON.parse(stdout) as { totals: { errors: number; warnings: number }; problems: LintProblem[] };
    const show = (p: LintProblem) => `${p.severity} ${p.ruleId} at ${p.location.map((l) => l.pointer).join(', ')}: ${p.message}`;
    for (const p of report.problems.filter((p) => p.severity === 'warn')) console.log(`redocly lint: ${show(p)}`);
    expect(report.problems.filter((p) => p.severity === 'error').map(show)).toEqual([]);
    expect(report.totals.errors).toBe(0);
    const unexpected = report.problems.filter((p) => p.severity === 'warn' && !ACCEPTED_WARNINGS.some((a) => a.ruleId === p.ruleId && p.location.some((l) => l.pointer === a.pointer)));
    expect(unexpected.map(show)).toEqual([]);
  }, 60_000);
});
