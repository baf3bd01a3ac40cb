import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBillingHook, type BillingHook } from '../harness/billing-hook.js';
import { FakeClock } from '../harness/fake-clock.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { startWebhookReceiver, type WebhookReceiver } from '../harness/webhook-receiver.js';
import { loadConfig } from '../../src/config/load-config.js';

/**
 * The disconnect rules end to end: HTTP API, policy gate, control loop, a real billing re-check endpoint, a real
 * mosquitto and simulated meters whose log of received commands is the proof that a disconnect was never sent.
 * The gateway runs on a fake clock (Tuesday 10:00 UTC) so that minutes and days pass without sleeping.
 */
const MIN = 60_000;
const DAY = 86_400_000;
const START = Date.parse('2026-11-24T10:00:00Z');
const CLOSES = 'acme-em340-fw2.4';
const ARMS = 'volta-pp20-fw1.7';

const meters: TestMeter[] = [
  ...['PLAN-1', 'PLAN-2', 'PLAN-3', 'PLAN-4', 'PLAN-5', 'PLAN-6', 'PLAN-7'].map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'connected' as const })),
  { meterId: 'SUP-ON', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'SUP-FAULT', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'SUP-ARM', profileId: ARMS, initialRelay: 'disconnected' },
  { meterId: 'SUP-GONE', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'ROLE-1', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'IMP-1', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'IMP-2', profileId: CLOSES, initialRelay: 'connected' },
];

let f: GatewayFixture;
let hook: BillingHook;
/** The customer channel (SMS/IVR gateway) that takes the pre-disconnect notifications of rule 2. */
let channel: WebhookReceiver;
let n = 0;
const clock = new FakeClock(START);
const k = () => ({ 'idempotency-key': `safety-${++n}` });
const disconnectsTo = (meterId: string) => f.fleet.meter(meterId).received.filter((c) => c.op === 'disconnect');
const order = async (id: string) => (await f.http('GET', `/v1/orders/${id}`)).body;
const waitUntil = async (what: string, cond: () => Promise<boolean>, timeoutMs = 10_000) => {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 30));
  }
};
/** A few ticks of the control loop (tickMs 50) pass in real time while the fake clock stands still. */
const someTicks = () => new Promise((r) => setTimeout(r, 400));

beforeAll(async () => {
  hook = await startBillingHook();
  channel = await startWebhookReceiver('customer-channel-secret-1');
  const base = loadConfig({});
  f = await startGatewayFixture(
    meters,
    {
      policy: { ...base.policy, paymentRecheck: { url: hook.url, timeoutMs: 500, retryAfterMs: 10 * MIN } },
      notifications: { webhookUrl: channel.url, secret: 'customer-channel-secret-1', pollMs: 50 },
    },
    { clock },
  );
}, 60_000);
afterAll(async () => {
  await f?.stop();
  await hook?.close();
  await channel?.close();
});

/** Order ids of the first plan, by meter. */
const plan: Record<string, string> = {};

describe('disconnect plans and the rules, end to end', () => {
  it('a plan needs a supervisor who is not its author; approved, each meter gets what the rules say', async () => {
    const served = new Date(START - 4 * DAY).toISOString();
    for (const m of ['PLAN-1', 'PLAN-2', 'PLAN-3', 'PLAN-4', 'PLAN-7']) {
      expect((await f.http('POST', `/v1/meters/${m}/notices`, { key: f.billingKey, headers: k(), body: { channel: 'letter', servedAt: served, delivery: 'delivered', receiptRef: `R-${m}` } })).status).toBe(201);
    }
    await f.http('POST', '/v1/meters/PLAN-6/notices', { key: f.billingKey, headers: k(), body: { channel: 'sms', servedAt: served, delivery: 'unknown' } });
    expect((await f.http('PUT', '/v1/meters/PLAN-4/flags', { key: f.billingKey, headers: k(), body: { vulnerable: true } })).body.vulnerable).toBe(true);

    const draft = await f.http('POST', '/v1/plans', {
      headers: k(),
      body: { reason: 'arrears', windowFrom: new Date(START - 60 * MIN).toISOString(), windowTo: new Date(START + 2 * DAY).toISOString(), meters: ['PLAN-1', 'PLAN-2', 'PLAN-3', 'PLAN-4', 'PLAN-5', 'PLAN-6'] },
    });
    expect(draft.status).toBe(201);
    expect(draft.body.status).toBe('draft');
    const id = draft.body.id as string;

    const self = await f.http('POST', `/v1/plans/${id}/approve`, { headers: k() });
    expect(self.status).toBe(403); // an operator may not approve at all
    const selfSup = await f.http('POST', `/v1/plans/${id}/approve`, { key: f.billingKey, headers: k() });
    expect(selfSup.status).toBe(403);

    const approved = await f.http('POST', `/v1/plans/${id}/approve`, { key: f.supervisorKey, headers: k() });
    expect(approved.status).toBe(200);
    expect(approved.body.status).toBe('approved');
    const by = Object.fromEntries(approved.body.items.map((i: any) => [i.meterId, i]));
    for (const m of ['PLAN-1', 'PLAN-2', 'PLAN-3']) plan[m] = by[m].orderId;
    expect(by['PLAN-4']).toMatchObject({ state: 'refused', why: expect.stringContaining('E_PROTECTED_CUSTOMER') });
    expect(by['PLAN-5']).toMatchObject({ state: 'refused', why: expect.stringContaining('E_NOTICE_MISSING') });
    expect(by['PLAN-6'].why).toContain('not evidence');
    expect(['queued', 'held']).toContain(by['PLAN-1'].state);
  });

  it("a plan's author cannot approve it, even holding a supervisor key", async () => {
    // The author is a person: an admin issues them a supervisor key as well (a supervisor who drafts).
    const made = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { clientId: 'demo-operator', role: 'supervisor' } });
    const own = await f.http('POST', '/v1/plans', {
      headers: k(),
      body: { reason: 'arrears', windowFrom: new Date(START).toISOString(), windowTo: new Date(START + DAY).toISOString(), meters: ['PLAN-7'] },
    });
    expect(own.body.author).toBe('demo-operator');
    const self = await f.http('POST', `/v1/plans/${own.body.id}/approve`, { key: made.body.key, headers: k() });
    expect(self.status).toBe(403);
    expect(self.body.code).toBe('E_SELF_APPROVAL');
    expect((await f.http('GET', `/v1/plans/${own.body.id}`)).body.status).toBe('draft');
    await f.http('POST', `/v1/plans/${own.body.id}/cancel`, { headers: k() });
  });

  it('the pre-disconnect notice goes out first; 29 minutes later nothing is sent, at 30 the command goes', async () => {
    for (const m of ['PLAN-1', 'PLAN-2', 'PLAN-3']) {
      await waitUntil(`${m} second notice`, async () => (await order(plan[m]!)).stateReason?.startsWith('E_SECOND_NOTICE_PENDING') ?? false);
      // The customer channel has it (delivered, signed): the 30 minutes run from now.
      await waitUntil(`${m} notice delivered`, async () => channel.received.some((r) => r.kind === 'pre_disconnect_notice' && r.body.meterId === m && r.signatureValid));
      await waitUntil(`${m} delivery recorded`, async () => ((await order(plan[m]!)).notifications ?? []).some((n: any) => n.deliveredAt !== null));
    }
    const timeline = (await f.http('GET', '/v1/meters/PLAN-1/timeline')).body.items;
    expect(timeline.some((i: any) => i.kind === 'notification' && i.summary.startsWith('pre disconnect notice'))).toBe(true);

    // The customer at PLAN-2 pays while the disconnect waits for its 30 minutes.
    const pay = await f.http('POST', '/v1/meters/PLAN-2/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment', paymentReceivedAt: new Date(clock.now()).toISOString() } });
    expect(pay.status).toBe(202);
    // The customer at PLAN-3 paid at the counter: billing's re-check will say so.
    hook.paid.add('PLAN-3');

    clock.advance(29 * MIN);
    await someTicks();
    for (const m of ['PLAN-1', 'PLAN-2', 'PLAN-3']) expect(disconnectsTo(m)).toEqual([]);
    expect((await order(plan['PLAN-1']!)).state).toBe('held');

    clock.advance(1 * MIN);
    const done = await f.waitForOrder(plan['PLAN-1']!);
    expect(done.state).toBe('done');
    expect(done.result).toEqual({ relay: 'disconnected', verified: true });
    expect(disconnectsTo('PLAN-1')).toHaveLength(1);
    expect(hook.asked.some((q) => q.meterId === 'PLAN-1' && q.orderId === plan['PLAN-1'])).toBe(true);

    const paidLater = await f.waitForOrder(plan['PLAN-3']!);
    expect(paidLater.state).toBe('cancelled');
    expect(paidLater.stateReason).toContain('E_PAID');
    expect((await order(plan['PLAN-2']!)).state).toBe('superseded');
    await someTicks();
    expect(disconnectsTo('PLAN-2')).toEqual([]);
    expect(disconnectsTo('PLAN-3')).toEqual([]);
    expect(f.fleet.meter('PLAN-2').relay).toBe('connected');
    expect(f.fleet.meter('PLAN-3').relay).toBe('connected');
  });

  it('a billing system that cannot be reached holds the disconnect; it is never assumed paid or unpaid', async () => {
    const p = await f.http('POST', '/v1/plans', {
      key: f.billingKey,
      headers: k(),
      body: { reason: 'arrears', windowFrom: new Date(clock.now()).toISOString(), windowTo: new Date(clock.now() + DAY).toISOString(), meters: ['PLAN-7'] },
    });
    const approved = await f.http('POST', `/v1/plans/${p.body.id}/approve`, { key: f.supervisorKey, headers: k() });
    const id = approved.body.items[0].orderId as string;
    await waitUntil('second notice', async () => (await order(id)).stateReason?.startsWith('E_SECOND_NOTICE_PENDING') ?? false);
    await waitUntil('second notice delivered', async () => ((await order(id)).notifications ?? []).some((n: any) => n.deliveredAt !== null));
    hook.mode = '500';
    clock.advance(31 * MIN);
    await waitUntil('billing hold', async () => (await order(id)).stateReason?.startsWith('E_BILLING_UNREACHABLE') ?? false);
    expect((await order(id)).state).toBe('held');
    expect(disconnectsTo('PLAN-7')).toEqual([]);
    hook.mode = 'ok';
    clock.advance(10 * MIN);
    expect((await f.waitForOrder(id)).state).toBe('done');
  });
});

describe('roles and keys', () => {
  it('billing cannot disconnect outside a plan; an operator cannot disconnect for arrears outside a plan; a field key cannot switch', async () => {
    const billing = await f.http('POST', '/v1/meters/ROLE-1/disconnect', { key: f.billingKey, headers: k(), body: { reason: 'arrears' } });
    expect(billing.status).toBe(403);
    const operator = await f.http('POST', '/v1/meters/ROLE-1/disconnect', { headers: k(), body: { reason: 'arrears' } });
    expect(operator.status).toBe(409);
    expect(operator.body.code).toBe('E_PLAN_REQUIRED');
    const field = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'crew-7', role: 'field' } });
    expect(field.status).toBe(201);
    expect((await f.http('POST', '/v1/meters/ROLE-1/reconnect', { key: field.body.key, headers: k(), body: { reason: 'payment' } })).status).toBe(403);
    expect((await f.http('POST', '/v1/meters/ROLE-1/disconnect', { key: field.body.key, headers: k(), body: { reason: 'customer_request', reference: 'REQ-1' } })).status).toBe(403);
    expect((await f.http('GET', '/v1/meters/ROLE-1', { key: field.body.key })).status).toBe(200);
    expect(disconnectsTo('ROLE-1')).toEqual([]);
  });

  it('a revoked key is refused at once; a rotated key’s old secret stops working', async () => {
    const made = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'ops-2', role: 'operator' } });
    expect((await f.http('GET', '/v1/meters/ROLE-1', { key: made.body.key })).status).toBe(200);
    const rotated = await f.http('POST', `/v1/keys/${made.body.id}/rotate`, { key: f.adminKey, headers: k() });
    expect((await f.http('GET', '/v1/meters/ROLE-1', { key: made.body.key })).status).toBe(401);
    expect((await f.http('GET', '/v1/meters/ROLE-1', { key: rotated.body.key })).status).toBe(200);
    expect((await f.http('DELETE', `/v1/keys/${made.body.id}`, { key: f.adminKey, headers: k() })).status).toBe(200);
    const refused = await f.http('GET', '/v1/meters/ROLE-1', { key: rotated.body.key });
    expect(refused.status).toBe(401);
    expect(refused.body.message).toContain('revoked');
    expect((await f.http('GET', '/v1/keys', { headers: {} })).status).toBe(403);
  });
});

describe('customer facts import', () => {
  it('a CSV with one bad row imports nothing and names the row; a good one is applied and audited', async () => {
    const bad = 'meterId,vulnerable,medicalEquipment\nIMP-1,true,false\nIMP-2,maybe,false\n';
    const r1 = await fetch(`${f.gateway.apiUrl}/v1/meters/facts/import`, { method: 'POST', headers: { authorization: `Bearer ${f.billingKey}`, 'content-type': 'text/csv', ...k() }, body: bad });
    const b1 = (await r1.json()) as any;
    expect(r1.status).toBe(422);
    expect(b1.code).toBe('E_IMPORT_INVALID');
    expect(b1.details.errors[0]).toMatchObject({ row: 2, field: 'vulnerable' });
    expect((await f.http('GET', '/v1/meters/IMP-1')).body.flags.vulnerable).toBe(false);
    const good = 'meterId,vulnerable,medicalEquipment,region\nIMP-1,true,,south\nIMP-2,,true,\n';
    const r2 = await fetch(`${f.gateway.apiUrl}/v1/meters/facts/import`, { method: 'POST', headers: { authorization: `Bearer ${f.billingKey}`, 'content-type': 'text/csv', ...k() }, body: good });
    expect(r2.status).toBe(200);
    const m1 = (await f.http('GET', '/v1/meters/IMP-1')).body;
    expect(m1.flags.vulnerable).toBe(true);
    expect(m1.region).toBe('south');
    expect((await f.http('GET', '/v1/meters/IMP-2')).body.flags.medicalEquipment).toBe(true);
    const audit = (await f.http('GET', '/v1/audit?target=IMP-1', { key: f.supervisorKey })).body.items;
    expect(audit.find((a: any) => a.action === 'meter.flags').details).toMatchObject({ before: { vulnerable: false }, after: { vulnerable: true } });
  });
});

describe('fault or disconnect? (the supply answer)', () => {
  it('answers on_supply, supply_fault, armed_waiting_for_customer, disconnected_by_order and unknown from simulated meters', async () => {
    const supply = async (m: string) => (await f.http('GET', `/v1/meters/${m}/supply`, { key: f.billingKey })).body;
    expect((await supply('SUP-ON')).status).toBe('on_supply');

    f.fleet.meter('SUP-FAULT').setSupplyFault(true);
    const fault = await supply('SUP-FAULT');
    expect(fault.status).toBe('supply_fault');
    expect(fault.observed.relay).toBe('connected');
    expect(fault.observed.voltageV).toBe(0);

    const r = await f.http('POST', '/v1/meters/SUP-ARM/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'top_up' } });
    expect((await f.waitForOrder(r.body.id)).state).toBe('armed');
    const armed = await supply('SUP-ARM');
    expect(armed).toMatchObject({ status: 'armed_waiting_for_customer', orderId: r.body.id });

    const off = await supply('PLAN-1');
    expect(off.status).toBe('disconnected_by_order');
    expect(off.orderId).toBe(plan['PLAN-1']);
    expect(off.sentence).toContain('arrears');

    f.fleet.meter('SUP-GONE').offlineUntil(Date.now() + 60_000);
    const gone = await supply('SUP-GONE');
    expect(gone.status).toBe('unknown');
    expect(gone.liveRead).toBe('failed');
  });
});

describe('audit', () => {
  it('every change is in a hash chain; changing any entry in the database is detected by the verify command', async () => {
    const verify = await f.http('GET', '/v1/audit/verify', { key: f.supervisorKey });
    expect(verify.body.ok).toBe(true);
    expect(verify.body.entries).toBeGreaterThan(10);
    const run = promisify(execFile);
    const cli = join(process.cwd(), 'dist', 'src', 'cli', 'audit-verify.js');
    const store = f.gateway.config.store;
    // The command checks the gateway's own store: the SQLite file, or the PostgreSQL schema.
    // The audit key is the gateway's (beside the SQLite file, found from --db; on PostgreSQL its configured key file).
    const pgEnv =
      store.kind === 'postgres' && store.postgres
        ? { DATABASE_URL: store.postgres.url, METERLINE__STORE__POSTGRES__SCHEMA: store.postgres.schema ?? '', METERLINE__AUDIT__KEYFILE: f.gateway.config.audit.keyFile ?? '' }
        : undefined;
    const verifyCommand = () => (pgEnv ? run(process.execPath, [cli], { env: { ...process.env, ...pgEnv } }) : run(process.execPath, [cli, '--db', store.sqlite.path]));
    const ok = await verifyCommand();
    expect(ok.stdout).toContain('chain intact');

    // Someone with access to the database edits an entry (they have to drop the append-only trigger first).
    let target: { seq: number };
    if (pgEnv) {
      const pg = (await import('pg')).default;
      const client = new pg.Client({ connectionString: store.postgres!.url });
      await client.connect();
      const table = `${store.postgres!.schema}.audit`;
      const triggers = await client.query(`SELECT tgname FROM pg_trigger WHERE tgrelid = '${table}'::regclass AND NOT tgisinternal`);
      for (const t of triggers.rows as { tgname: string }[]) await client.query(`DROP TRIGGER ${t.tgname} ON ${table}`);
      const row = await client.query(`SELECT seq FROM ${table} WHERE action = 'plan.approve' LIMIT 1`);
      target = { seq: Number(row.rows[0].seq) };
      await client.query(`UPDATE ${table} SET actor = 'someone-else' WHERE seq = $1`, [target.seq]);
      await client.end();
    } else {
      const db = new Database(store.sqlite.path);
      db.exec('DROP TRIGGER audit_no_update');
      target = db.prepare(`SELECT seq FROM audit WHERE action = 'plan.approve' LIMIT 1`).get() as { seq: number };
      db.prepare('UPDATE audit SET actor = ? WHERE seq = ?').run('someone-else', target.seq);
      db.close();
    }

    const tampered = await verifyCommand().catch((e: { code: number; stdout: string }) => e);
    expect((tampered as { code: number }).code).toBe(3);
    expect((tampered as { stdout: string }).stdout).toContain(`TAMPERED at entry ${target.seq}`);
    expect((await f.http('GET', '/v1/audit/verify', { key: f.supervisorKey })).body).toMatchObject({ ok: false, badSeq: target.seq });
  });
});

