import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { runCli } from './run-cli.js';

/**
 * The CLI's commands for the operators' other resources against a real gateway, mosquitto and simulated meters:
 * API keys (create, list, rotate, revoke), field work (assign, complete), circuit breakers (list, reset), alerts,
 * and the audit log (verify, export). A breaker is opened for real, by meters whose relays stick.
 */
const CLOSES = 'acme-em340-fw2.4';
const HOUR = 3_600_000;
const STUCK = ['BRK-1', 'BRK-2', 'BRK-3', 'BRK-4'];
let f: GatewayFixture;
const meterline = (args: string[], key: string = f.operatorKey) => runCli(args, { METERLINE_URL: f.gateway.apiUrl, METERLINE_KEY: key });
const json = async (args: string[], key?: string) => {
  const r = await meterline([...args, '--json'], key);
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout);
};
const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

beforeAll(async () => {
  const base = loadConfig({});
  f = await startGatewayFixture(
    [
      { meterId: 'WO-1', profileId: CLOSES, initialRelay: 'disconnected', region: 'east' },
      ...STUCK.map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'connected' as const, region: 'brk', link: 'dc-brk' })),
    ],
    { successRates: { ...base.successRates, windowMinutes: [5], minSamples: 4, breakerMinSamples: 4, evaluateEveryMs: 200 } },
  );
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('meterline api-keys, work-orders, breakers, alerts, audit', () => {
  let crewKey = '';

  it('api-keys: an admin creates a field key (secret on the last line, once), lists, rotates (old secret refused) and revokes; others exit 5', async () => {
    const created = await meterline(['api-keys', 'create', '--role', 'field', '--name', 'crew-east-1'], f.adminKey);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain('shown this once');
    const [line, secret] = created.stdout.trimEnd().split('\n');
    expect(line).toMatch(/^key (\S+): field of crew-east-1 \(client \S+\)$/);
    const keyId = /^key (\S+):/.exec(line!)![1]!;
    expect((await json(['whoami'], secret)).role).toBe('field');
    expect((await json(['api-keys', 'list'], f.adminKey)).items.map((k: any) => k.id)).toContain(keyId);

    const rotated = await meterline(['api-keys', 'rotate', keyId], f.adminKey);
    expect(rotated.code).toBe(0);
    crewKey = rotated.stdout.trimEnd().split('\n').at(-1)!;
    expect(crewKey).not.toBe(secret);
    expect((await meterline(['whoami'], secret!)).code).toBe(5);
    expect((await json(['whoami'], crewKey)).name).toBe('crew-east-1');

    const spare = (await json(['api-keys', 'create', '--role', 'auditor', '--name', 'spare'], f.adminKey)) as { id: string; key: string };
    expect((await meterline(['api-keys', 'revoke', spare.id], f.adminKey)).stdout).toMatch(/^key \S+: auditor of spare .*, revoked /);
    expect((await meterline(['whoami'], spare.key)).code).toBe(5);

    const forbidden = await meterline(['api-keys', 'list']);
    expect(forbidden.code).toBe(5);
    expect(forbidden.stderr).toContain('E_FORBIDDEN');
    for (const args of [['api-keys', 'create', '--name', 'x'], ['api-keys', 'create', '--role', 'field'], ['api-keys', 'rotate'], ['api-keys', 'frob']]) {
      expect((await meterline(args, f.adminKey)).code, args.join(' ')).toBe(2);
    }
    expect((await meterline(['api-keys', 'rotate', 'key_nope'], f.adminKey)).code).toBe(4);
  }, 120_000);

  it('work-orders assign and complete: a crew takes the work order of an escalated reconnect and completes it; the order ends done_by_field', async () => {
    f.fleet.meter('WO-1').offlineUntil(Date.now() + HOUR);
    const paidAt = new Date(Date.now() - 20 * HOUR).toISOString();
    const r = await meterline(['reconnect', 'WO-1', '--payment-at', paidAt, '--wait', '--json']);
    expect(r.code).toBe(7);
    const orderId = JSON.parse(r.stdout).id;
    const wo = await until('the work order', async () => ((await json(['work-orders', '--status', 'open'])).items as any[]).find((w) => w.meterId === 'WO-1'));

    const assigned = await meterline(['work-orders', 'assign', wo.id, '--to', 'crew-east-1'], crewKey);
    expect(assigned.code, assigned.stderr).toBe(0);
    expect(assigned.stdout).toBe(`work order ${wo.id}: reconnect WO-1 is assigned, assigned to crew-east-1\n`);
    expect((await meterline(['work-orders', 'complete', wo.id, '--outcome', 'fixed'], crewKey)).code).toBe(2);
    expect((await meterline(['work-orders', 'complete', wo.id], crewKey)).code).toBe(2);
    expect((await meterline(['work-orders', 'assign', 'wo_nope', '--to', 'crew-east-1'], crewKey)).code).toBe(4);

    const completed = await until('the completion', async () => {
      const c = await meterline(['work-orders', 'complete', wo.id, '--outcome', 'reconnected', '--note', 'closed by hand'], crewKey);
      return c.code === 3 ? undefined : c; // an attempt on the wire: report again
    });
    expect(completed.code, completed.stderr).toBe(0);
    expect(completed.stdout).toContain(`work order ${wo.id}: reconnect WO-1 is done, assigned to crew-east-1, outcome reconnected (closed by hand)`);
    expect(completed.stdout).toContain(`order ${orderId}: reconnect WO-1 is done_by_field`);
  }, 120_000);

  it('breakers: disconnects that keep failing open a breaker; a supervisor resets it; alerts lists what happened', async () => {
    for (const m of STUCK) f.fleet.meter(m).setFaults({ stuckRelay: true });
    for (const m of STUCK) expect((await meterline(['disconnect', m, '--reason', 'customer_request', '--reference', `REQ-${m}`])).code).toBe(0);
    const breaker = await until('an open breaker', async () => ((await json(['breakers'])).items as any[])[0]);
    const listed = await meterline(['breakers']);
    expect(listed.stdout).toMatch(new RegExp(`^${breaker.id}\\s+disconnect\\s+\\S+\\s+\\S+\\s+.*open\\s+disconnect success`, 'm'));

    expect((await meterline(['breakers', 'reset', breaker.id], f.billingKey)).code).toBe(5);
    const reset = await meterline(['breakers', 'reset', breaker.id], f.supervisorKey);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toMatch(new RegExp(`^breaker ${breaker.id} \\(disconnect .*\\) reset by \\S+ at .*; held disconnects resume`));
    expect(((await json(['breakers', '--all'])).items as any[]).find((b) => b.id === breaker.id).resetAt).not.toBeNull();
    expect((await meterline(['breakers', 'reset', 'brk_nope'], f.supervisorKey)).code).toBe(4);

    const alerts = await until('an alert', async () => {
      const items = (await json(['alerts', '--limit', '50'])).items as any[];
      return items.length > 0 ? items : undefined;
    });
    expect(alerts[0]).toMatchObject({ id: expect.any(String), kind: expect.any(String), at: expect.any(String) });
    expect((await meterline(['alerts'])).stdout).toMatch(/^AT\s+KIND\s+METER\s+STATE\s+BY\s+DELIVERED\s+ID$/m);
    expect((await meterline(['alerts', '--limit', 'all'])).code).toBe(2);
  }, 120_000);

  it('alerts ack and clear: a supervisor acknowledges an alert, an operator clears it, acting again on it exits 3; billing may not (exit 5); an unknown id exits 4', async () => {
    const alert = await until('an open alert', async () => ((await json(['alerts', '--state', 'open'])).items as any[])[0]);
    expect((await meterline(['alerts', 'ack', alert.id], f.billingKey)).code).toBe(5);
    const ack = await meterline(['alerts', 'ack', alert.id, '--note', 'looking at dc-brk'], f.supervisorKey);
    expect(ack.code, ack.stderr).toBe(0);
    expect(ack.stdout).toMatch(new RegExp(`^alert ${alert.id} \\(${alert.kind}.*\\) is acknowledged, acknowledged by demo-supervisor$`, 'm'));
    expect(((await json(['alerts', '--state', 'acknowledged'])).items as any[]).map((a) => a.id)).toContain(alert.id);
    const cleared = await json(['alerts', 'clear', alert.id]);
    expect(cleared).toMatchObject({ id: alert.id, state: 'cleared', acknowledgedBy: 'demo-supervisor', clearedBy: 'demo-operator' });
    const again = await meterline(['alerts', 'ack', alert.id]);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('E_ALERT_CLEARED');
    expect((await meterline(['alerts', 'clear', 'ntf_nope'])).code).toBe(4);
    expect((await meterline(['alerts'])).stdout).toMatch(new RegExp(`\\scleared\\s+demo-operator\\s+(yes|no)\\s+${alert.id}$`, 'm'));
    const exported = await meterline(['audit', 'export', '--target', alert.id], f.supervisorKey);
    const entries = exported.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(entries.map((e) => [e.action, e.actor, e.details.note])).toEqual([
      ['alert.acknowledge', 'demo-supervisor', 'looking at dc-brk'],
      ['alert.clear', 'demo-operator', null],
    ]);
  }, 60_000);

  it('audit verify (exit 0 intact) and audit export as NDJSON and CSV, with filters; an operator may not read the audit log', async () => {
    const verify = await meterline(['audit', 'verify'], f.supervisorKey);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^audit log: \d+ entries, chain intact/);
    expect((await json(['audit', 'verify'], f.supervisorKey)).ok).toBe(true);

    const ndjson = await meterline(['audit', 'export'], f.supervisorKey);
    expect(ndjson.code).toBe(0);
    const entries = ndjson.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(entries.length).toBeGreaterThan(5);
    expect(entries.every((e) => typeof e.hash === 'string' && typeof e.seq === 'number')).toBe(true);
    const target = entries.find((e) => e.target === 'WO-1')?.target ?? entries[0].target;
    const csv = await meterline(['audit', 'export', '--format', 'csv', '--target', target, '--from', new Date(Date.now() - HOUR).toISOString()], f.supervisorKey);
    const lines = csv.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('seq,at,actor,action,target,details,hash');
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.slice(1).every((l) => l.split(',')[4] === target)).toBe(true);

    expect((await meterline(['audit', 'verify'])).code).toBe(5);
    expect((await meterline(['audit', 'export', '--format', 'xml'], f.supervisorKey)).code).toBe(2);
    expect((await meterline(['audit', 'export', '--from', 'last week'], f.supervisorKey)).code).toBe(2);
  }, 120_000);
});
