import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { runCli } from './run-cli.js';

/**
 * The built `meterline` command (node dist/src/cli/meterline.js, built by `npm run build`) against a real gateway,
 * mosquitto and simulated meters: what a script sees on stdout, stderr and in the exit code.
 */
const CLOSES = 'acme-em340-fw2.4';
const meters: TestMeter[] = [
  { meterId: 'CLI-1', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'CLI-2', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'CLI-3', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'CLI-4', profileId: 'volta-pp20-fw1.7', initialRelay: 'disconnected' },
  { meterId: 'CLI-LIM', profileId: CLOSES, initialRelay: 'connected' },
];

let f: GatewayFixture;
const dir = mkdtempSync(join(tmpdir(), 'ml-cli-'));

/** An empty config directory: no stored context of the user running the tests stands in for a missing key. */
const meterline = (args: string[], key: string | null = f.operatorKey) =>
  runCli(args, { XDG_CONFIG_HOME: join(dir, 'config'), METERLINE_URL: f.gateway.apiUrl, ...(key ? { METERLINE_KEY: key } : {}) });

beforeAll(async () => {
  // The gateway reads its key master from its environment (here: this process's), for `keys import`.
  process.env.METERLINE_KEY_MASTER = 'ab'.repeat(32);
  f = await startGatewayFixture(meters);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('meterline CLI', () => {
  it('keys import: an admin imports a key file (meters and key set ids printed, never keys), again without change; other roles exit 5', async () => {
    const ek = '000102030405060708090A0B0C0D0E0F';
    const file = join(dir, 'keys.csv');
    writeFileSync(file, `meter id,system title,GUEK,GAK\nCLI-1,4D4D4D0000BC614E,${ek},D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n`);
    const first = await meterline(['keys', 'import', file], f.adminKey);
    expect(first.code).toBe(0);
    expect(first.stdout.trimEnd()).toMatch(/^1 meter\(s\): 1 created, 0 unchanged, 0 replaced\n  CLI-1  ks_[0-9a-f]{20}  created$/);
    const again = await meterline(['keys', 'import', file, '--json'], f.adminKey);
    expect(JSON.parse(again.stdout)).toMatchObject({ imported: 1, unchanged: 1 });
    const listed = await meterline(['keys', 'list', 'CLI-1'], f.adminKey);
    expect(listed.stdout).toMatch(/^ks_[0-9a-f]{20}  current /);
    for (const out of [first.stdout, again.stdout, listed.stdout]) expect(out.toUpperCase()).not.toContain(ek);
    const refused = await meterline(['keys', 'import', file]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('E_FORBIDDEN');
    writeFileSync(file, `meter id,system title,GUEK,GAK\nCLI-1,4D4D4D0000BC614E,${ek},D0D1\n`);
    const bad = await meterline(['keys', 'import', file], f.adminKey);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('E_KEY_FILE_INVALID');
    expect(bad.stderr).toContain('row 1, authenticationKey');
  });

  it('keys renew: admin only; a meter that is not an HLS-GMAC DLMS meter is refused with its code (renewal itself: tests/e2e/dlms-key-renew-api.test.ts)', async () => {
    const forbidden = await meterline(['keys', 'renew', 'CLI-2']);
    expect(forbidden.code).toBe(5);
    expect(forbidden.stderr).toContain('E_FORBIDDEN');
    const unsupported = await meterline(['keys', 'renew', 'CLI-2'], f.adminKey);
    expect(unsupported.code).not.toBe(0);
    expect(unsupported.stderr).toContain('E_KEY_RENEWAL_UNSUPPORTED');
    expect(unsupported.stderr).toContain('CLI-2');
    const usage = await meterline(['keys', 'renew'], f.adminKey);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('meterline keys renew <meter>');
  });

  it('reconnects a meter, then follows the order to done; --json output parses', async () => {
    const created = await meterline(['reconnect', 'CLI-1', '--reason', 'payment', '--payment-at', new Date().toISOString(), '--json']);
    expect(created.code).toBe(0);
    const order = JSON.parse(created.stdout);
    expect(order).toMatchObject({ meterId: 'CLI-1', action: 'reconnect', reason: 'payment' });

    const watched = await meterline(['order', order.id, '--watch', '--json']);
    expect(watched.code).toBe(0);
    const done = JSON.parse(watched.stdout);
    expect(done.state).toBe('done');
    expect(done.result).toEqual({ relay: 'connected', verified: true });
    expect(f.fleet.meter('CLI-1').relay).toBe('connected');

    const human = await meterline(['order', order.id]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`order ${order.id}: reconnect CLI-1 is done`);
    expect(human.stdout).toMatch(/attempt 1: ok \d+ ms, read back connected/);
  });

  it('limit: sets a demand limit and follows it to done (read back), then removes it; a meter without limiter exits 3 with E_NO_LOAD_LIMITER', async () => {
    const set = await meterline(['limit', 'CLI-LIM', '1500', '--reason', 'arrears', '--wait']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('limit to 1500 W CLI-LIM is done');
    expect(f.fleet.meter('CLI-LIM').loadLimitW).toBe(1500);
    expect(f.fleet.meter('CLI-LIM').relay).toBe('connected');
    const lift = await meterline(['limit', 'CLI-LIM', '--remove', '--wait', '--json']);
    expect(lift.code, lift.stderr).toBe(0);
    expect(JSON.parse(lift.stdout)).toMatchObject({ action: 'limit', limitW: null, reason: 'operator', state: 'done' });
    expect(f.fleet.meter('CLI-LIM').loadLimitW).toBeNull();
    const none = await meterline(['limit', 'CLI-4', '1000', '--reason', 'arrears']);
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/^meterline: E_NO_LOAD_LIMITER: .*volta-pp20-fw1\.7/);
    const usage = await meterline(['limit', 'CLI-LIM', 'lots', '--reason', 'arrears']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('not a whole number of watts');
  });

  it('sends an Idempotency-Key: the same --idempotency-key returns the same order instead of a second one', async () => {
    const a = JSON.parse((await meterline(['reconnect', 'CLI-2', '--idempotency-key', 'script-run-42', '--json'])).stdout);
    const b = JSON.parse((await meterline(['reconnect', 'CLI-2', '--idempotency-key', 'script-run-42', '--json'])).stdout);
    expect(b.id).toBe(a.id);
    const conflict = await meterline(['reconnect', 'CLI-2', '--idempotency-key', 'script-run-42', '--reason', 'operator']);
    expect(conflict.code).toBe(3);
    expect(conflict.stderr).toContain('E_IDEMPOTENCY_CONFLICT');
  });

  it('exit 3 when a rule refuses: a disconnect for arrears outside a plan, with the code and message', async () => {
    const r = await meterline(['disconnect', 'CLI-2', '--reason', 'arrears']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^meterline: E_PLAN_REQUIRED: .*plan/);
    const j = await meterline(['disconnect', 'CLI-2', '--reason', 'arrears', '--json']);
    expect(j.code).toBe(3);
    expect(JSON.parse(j.stdout).error.code).toBe('E_PLAN_REQUIRED');
    expect(f.fleet.meter('CLI-2').relay).toBe('connected');
  });

  it('exit 5 for authentication and permission: a billing key may not disconnect, an unknown key, no key', async () => {
    const billing = await meterline(['disconnect', 'CLI-2', '--reason', 'customer_request'], f.billingKey);
    expect(billing.code).toBe(5);
    expect(billing.stderr).toContain('E_FORBIDDEN');
    const unknown = await meterline(['whoami'], 'op_not-a-real-key');
    expect(unknown.code).toBe(5);
    expect(unknown.stderr).toContain('E_UNAUTHORIZED');
    expect((await meterline(['whoami'], null)).code).toBe(5);
    const who = await meterline(['whoami', '--json'], f.billingKey);
    expect(JSON.parse(who.stdout)).toMatchObject({ name: 'demo-billing', role: 'billing' });
  });

  it('exit 4 when the order or meter does not exist', async () => {
    const order = await meterline(['order', 'ord_does_not_exist']);
    expect(order.code).toBe(4);
    expect(order.stderr).toContain('E_ORDER_NOT_FOUND');
    expect((await meterline(['supply', 'NO-SUCH-METER'])).code).toBe(4);
    expect((await meterline(['reconnect', 'NO-SUCH-METER'])).code).toBe(4);
  });

  it('exit 2 for usage errors, with a hint', async () => {
    for (const args of [[], ['frobnicate'], ['disconnect', 'CLI-2'], ['orders', '--limit', 'many'], ['reconnect', 'CLI-2', '--payment-at', 'yesterday'], ['order', 'x', '--bogus'], ['bulk', join(dir, 'missing.csv'), '--action', 'reconnect']]) {
      const r = await meterline(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).not.toBe('');
    }
    const help = await meterline(['--help'], null);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Exit codes');
  });

  it('runs a bulk reconnect from a CSV file with a progress bar to the end', async () => {
    const file = join(dir, 'payments.csv');
    writeFileSync(file, 'meterId,reason\nCLI-3,payment\nCLI-4,top_up\n');
    const r = await meterline(['bulk', file, '--action', 'reconnect']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('bulk reconnect: 2 created, 0 replayed, 0 refused');
    expect(r.stderr).toMatch(/\[#{30}\] 100% 2\/2/);
    expect(r.stdout).toMatch(/done\s+1/); // the credit meter closes its relay
    expect(r.stdout).toMatch(/armed\s+1/); // the prepayment meter only arms it (the customer presses the button)
  });

  it('prints work orders, success rates, a timeline and the supply answer as text', async () => {
    const rates = await meterline(['success-rates', '--fresh']);
    expect(rates.code).toBe(0);
    expect(rates.stdout).toMatch(/WINDOW\s+SCOPE\s+KEY\s+ACTION\s+RATE/);
    expect(rates.stdout).toMatch(/profile\s+acme-em340-fw2.4\s+reconnect\s+100.0%/);
    const timeline = await meterline(['timeline', 'CLI-1']);
    expect(timeline.stdout).toContain('attempt 1 of reconnect: ok, read back connected');
    const supply = await meterline(['supply', 'CLI-1']);
    expect(supply.stdout).toMatch(/^CLI-1: on_supply/);
    const wo = await meterline(['work-orders', '--status', 'open']);
    expect(wo.code).toBe(0);
    expect(wo.stdout).toMatch(/TIME LEFT\s+DEADLINE/);
  });
});
