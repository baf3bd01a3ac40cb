import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { runCli } from './run-cli.js';

/**
 * `meterline bulk` against a real gateway: a file naming unknown meters is refused as a whole and the CLI names
 * them; meter ids given twice are warned about before anything is sent.
 */
const CLOSES = 'acme-em340-fw2.4';
const dir = mkdtempSync(join(tmpdir(), 'ml-bulk-'));
let f: GatewayFixture;
const meterline = (args: string[]) => runCli(args, { METERLINE_URL: f.gateway.apiUrl, METERLINE_KEY: f.operatorKey });

beforeAll(async () => {
  f = await startGatewayFixture([
    { meterId: 'BULK-1', profileId: CLOSES, initialRelay: 'disconnected' },
    { meterId: 'BULK-2', profileId: CLOSES, initialRelay: 'disconnected' },
  ]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('meterline bulk: unknown and duplicate meters', () => {
  it('names the unknown meters of a refused file (exit 4, nothing created), in text and in --json', async () => {
    const file = join(dir, 'unknown.csv');
    writeFileSync(file, 'meterId\nBULK-1\nNOPE-7\nBULK-2\nNOPE-9\n');
    const r = await meterline(['bulk', file, '--action', 'reconnect']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('E_METER_NOT_FOUND: 2 order(s) name meters that are not registered; nothing was created');
    expect(r.stderr).toContain('\n  unknown meters: NOPE-7, NOPE-9\n');
    const j = await meterline(['bulk', file, '--action', 'reconnect', '--json']);
    expect(j.code).toBe(4);
    expect(JSON.parse(j.stdout).error).toMatchObject({ code: 'E_METER_NOT_FOUND', details: { missing: [{ index: 1, meterId: 'NOPE-7' }, { index: 3, meterId: 'NOPE-9' }] } });
    expect((await f.http('GET', '/v1/orders?meterId=BULK-1')).body.items).toEqual([]);

    // The gateway names the first 100 unknown meters; the CLI says so when there are more.
    const many = join(dir, 'many.csv');
    writeFileSync(many, Array.from({ length: 105 }, (_, i) => `GONE-${i + 1}`).join('\n'));
    const m = await meterline(['bulk', many, '--action', 'reconnect']);
    expect(m.code).toBe(4);
    expect(m.stderr).toMatch(/\n {2}unknown meters \(those of the first 100 of 105 orders\): GONE-1, GONE-2, .*, GONE-100\n/);
  }, 90_000);

  it('warns about meter ids given more than once, with their positions, before sending', async () => {
    const file = join(dir, 'dups.json');
    writeFileSync(file, JSON.stringify(['BULK-1', 'BULK-2', 'BULK-1', 'BULK-1']));
    const r = await meterline(['bulk', file, '--action', 'reconnect', '--detach']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`meterline: warning: 1 meter id(s) occur more than once in ${file}`);
    expect(r.stderr).toContain('\n  BULK-1: orders 1, 3, 4\n');
    expect(r.stderr.indexOf('warning')).toBeLessThan(r.stderr.indexOf('bulk reconnect: 4 created'));
    expect(r.stderr).not.toContain('BULK-2: orders');
  }, 90_000);
});
