import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { runCli } from './run-cli.js';

/**
 * `--wait`/`--watch` with `--timeout` and `--wait-field` against a real gateway, mosquitto and simulated meters: an
 * order that stays open past the timeout exits 6, an order that goes to the field exits 7 at once. The orders are
 * made to stay open by what they are (a disconnect not before an hour from now, a meter that is offline for an
 * hour), not by timing, so a loaded machine changes nothing.
 */
const CLOSES = 'acme-em340-fw2.4';
const HOUR = 3_600_000;
const dir = mkdtempSync(join(tmpdir(), 'ml-wait-'));
let f: GatewayFixture;
const meterline = (args: string[]) => runCli(args, { METERLINE_URL: f.gateway.apiUrl, METERLINE_KEY: f.operatorKey });

beforeAll(async () => {
  f = await startGatewayFixture([
    { meterId: 'WAIT-1', profileId: CLOSES, initialRelay: 'connected' },
    { meterId: 'WAIT-GONE', profileId: CLOSES, initialRelay: 'disconnected' },
    { meterId: 'WAIT-B1', profileId: CLOSES, initialRelay: 'disconnected' },
    { meterId: 'WAIT-B2', profileId: CLOSES, initialRelay: 'disconnected' },
    { meterId: 'WAIT-B3', profileId: CLOSES, initialRelay: 'connected' },
  ]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('meterline --wait/--watch with --timeout', () => {
  it('an order still open when the timeout passes: exit 6, its state printed; a bad duration is a usage error and sends nothing', async () => {
    const notBefore = new Date(Date.now() + HOUR).toISOString();
    const r = await meterline(['disconnect', 'WAIT-1', '--reason', 'customer_request', '--reference', 'REQ-9', '--not-before', notBefore, '--wait', '--timeout', '1s']);
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toMatch(/is still (queued|held) after 1s \(--timeout\)/);
    const id = /order (ord_\S+):/.exec(r.stdout)![1]!;
    const json = await meterline(['order', id, '--watch', '--timeout', '500ms', '--json']);
    expect(json.code).toBe(6);
    expect(JSON.parse(json.stdout)).toMatchObject({ id, state: expect.stringMatching(/^(queued|held)$/) });
    expect(f.fleet.meter('WAIT-1').relay).toBe('connected');

    const before = (await f.http('GET', '/v1/orders?meterId=WAIT-1')).body.items.length;
    for (const args of [['order', id, '--watch', '--timeout', 'soon'], ['order', id, '--timeout', '5s'], ['disconnect', 'WAIT-1', '--reason', 'customer_request', '--reference', 'REQ-10', '--wait', '--timeout', '0s']]) {
      const bad = await meterline(args);
      expect(bad.code, args.join(' ')).toBe(2);
      expect(bad.stderr, args.join(' ')).toMatch(/E_USAGE: --timeout/);
    }
    expect((await f.http('GET', '/v1/orders?meterId=WAIT-1')).body.items.length).toBe(before);
  }, 90_000);

  it('an order that goes to the field: --wait returns at once with exit 7; with --wait-field it waits on, until its timeout (6)', async () => {
    f.fleet.meter('WAIT-GONE').offlineUntil(Date.now() + HOUR);
    // Paid 20 hours ago: less than the field lead time (8 h) is left, so the reconnect is escalated at once.
    const paidAt = new Date(Date.now() - 20 * HOUR).toISOString();
    const r = await meterline(['reconnect', 'WAIT-GONE', '--payment-at', paidAt, '--wait', '--timeout', '5m']);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stdout).toMatch(/reconnect WAIT-GONE is escalated/);
    const id = /order (ord_\S+):/.exec(r.stdout)![1]!;
    expect(r.stderr).toContain(`meterline order ${id} --watch --wait-field`);
    const field = await meterline(['order', id, '--watch', '--wait-field', '--timeout', '1s']);
    expect(field.code).toBe(6);
    expect(field.stderr).toContain('is still escalated after 1s');
  }, 90_000);

  it('bulk waits until every order is final or with the field (exit 7), or until --timeout (exit 6)', async () => {
    f.fleet.meter('WAIT-B2').offlineUntil(Date.now() + HOUR);
    const paidAt = new Date(Date.now() - 20 * HOUR).toISOString();
    const file = join(dir, 'escalates.csv');
    writeFileSync(file, `meterId,paymentReceivedAt\nWAIT-B1,${new Date().toISOString()}\nWAIT-B2,${paidAt}\n`);
    const r = await meterline(['bulk', file, '--action', 'reconnect']);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stdout).toMatch(/done\s+1/);
    expect(r.stdout).toMatch(/escalated\s+1/);

    const later = join(dir, 'later.csv');
    writeFileSync(later, `meterId,reference,notBefore\nWAIT-B3,REQ-B3,${new Date(Date.now() + HOUR).toISOString()}\n`);
    const open = await meterline(['bulk', later, '--action', 'disconnect', '--reason', 'customer_request', '--timeout', '1s', '--json']);
    expect(open.code, open.stderr).toBe(6);
    expect(JSON.parse(open.stdout).orders[0]).toMatchObject({ meterId: 'WAIT-B3', state: expect.stringMatching(/^(queued|held)$/) });
    expect((await meterline(['bulk', later, '--action', 'disconnect', '--reason', 'customer_request', '--detach', '--timeout', '1s'])).code).toBe(2);
  }, 90_000);
});
