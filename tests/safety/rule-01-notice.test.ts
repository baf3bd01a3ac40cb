import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { bulkResults, DAY, HOUR, iso, MIN, safetyWorldForFile } from './safety-harness.js';

/**
 * DOMAIN.md rule 1 (issue 20, finding 3): a disconnect for arrears needs a notice served 3–7 days before, with
 * evidence of delivery. A notice recorded as delivered without its reference (an SMS with no delivery receipt, a
 * letter with no tracking number) is refused at input, directly or in an import, and ignored by the gate if it was
 * stored before that check existed. Too recent holds, too old refuses, on every path: single, bulk, plan, CLI, a
 * retry, a restart, and time passing over a weekend in between.
 *
 * The plan rule (rule 7) is off here (`nonPaymentRequiresPlan: false`) so that single, bulk and CLI disconnects
 * for arrears are decided by rule 1 and not refused by the plan rule first; the plan path still goes through a
 * plan drafted by an operator and approved by a supervisor.
 */
const METERS = ['N-OK', 'N-INPUT', 'N-LEGACY', 'N-SINGLE', 'N-BULK', 'N-CLI', 'N-PLAN', 'N-RETRY', 'N-RESTART', 'N-CHANGE'];
const w = safetyWorldForFile(METERS, { policy: { nonPaymentRequiresPlan: false } });
// The shared fake clock only moves forward in this file (w.moveClockTo): each test says where it stands.

const notice = (meterId: string, body: Record<string, unknown>) => w.http('POST', `/v1/meters/${meterId}/notices`, { key: w.f.billingKey, headers: w.key(), body });
const noticesOf = async (meterId: string): Promise<any[]> => (await w.http('GET', `/v1/meters/${meterId}/notices`)).body.items;
const servedDaysAgo = (days: number) => iso(w.clock.now() - days * DAY);
/** An SMS whose delivery receipt never came: recorded honestly as "unknown", so it is not evidence. */
const smsWithoutReceipt = async (meterId: string, daysAgo: number) => {
  const r = await notice(meterId, { channel: 'sms', servedAt: servedDaysAgo(daysAgo), delivery: 'unknown' });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
};
/** Nothing reached the broker for this meter and its relay is still closed (call only after positive evidence). */
const nothingOnWire = async (meterId: string) => {
  await w.settle();
  expect(w.disconnectsOnWire(meterId)).toBe(0);
  expect(w.f.fleet.meter(meterId).relay).toBe('connected');
};
/** The order the CLI created or was refused for this meter (the latest disconnect). */
const latestDisconnect = async (meterId: string) => (await w.disconnectOrdersOf(meterId))[0];

describe('rule 1: a disconnect for arrears needs a delivered notice, with its reference, 3 to 7 days old', () => {
  it('control: a letter delivered 4 days ago with its tracking number lets the disconnect go; the broker carries one command', async () => {
    await w.serveNotice('N-OK', 4);
    const r = await w.single('N-OK', { reason: 'arrears' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const delivered = await w.secondNoticeDeliveredAt(r.body.id);
    w.moveClockTo(delivered + 30 * MIN);
    const done = await w.f.waitForOrder(r.body.id);
    expect(done).toMatchObject({ state: 'done', result: { relay: 'disconnected', verified: true } });
    await w.waitFor('the command on the wire', () => w.disconnectsOnWire('N-OK') >= 1);
    await w.settle();
    expect(w.disconnectsOnWire('N-OK')).toBe(1);
    expect(w.f.fleet.meter('N-OK').relay).toBe('disconnected');
  });

  it('input (finding 3): a notice recorded as delivered without its reference is refused, directly and in an import; a plan then disconnects nothing', async () => {
    // The notice: {channel: 'sms', delivery: 'delivered', receiptRef: null} was accepted with 201.
    const sms = await notice('N-INPUT', { channel: 'sms', servedAt: servedDaysAgo(4), delivery: 'delivered', receiptRef: null });
    expect(sms.status, JSON.stringify(sms.body)).toBe(400);
    expect(sms.body.code).toBe('E_NOTICE_NO_EVIDENCE');
    expect(sms.body.message).toContain('delivery receipt');
    // A letter with no tracking or proof-of-posting number, and a blank one, are no better.
    const letter = await notice('N-INPUT', { channel: 'letter', servedAt: servedDaysAgo(4), delivery: 'delivered' });
    expect(letter.status, JSON.stringify(letter.body)).toBe(400);
    expect(letter.body.code).toBe('E_NOTICE_NO_EVIDENCE');
    const blank = await notice('N-INPUT', { channel: 'letter', servedAt: servedDaysAgo(4), delivery: 'delivered', receiptRef: '   ' });
    expect(blank.status, JSON.stringify(blank.body)).toBe(400);
    expect(blank.body.code).toBe('E_NOTICE_NO_EVIDENCE');
    expect(await noticesOf('N-INPUT')).toEqual([]);

    // The same in an import: row 1 is fine, row 2 claims an SMS delivered with no receipt; nothing is imported.
    const imported = await w.http('POST', '/v1/meters/facts/import', {
      key: w.f.billingKey,
      headers: w.key(),
      body: {
        rows: [
          { meterId: 'N-INPUT', noticeChannel: 'letter', noticeServedAt: servedDaysAgo(4), noticeDelivery: 'delivered', noticeReceiptRef: 'RM-N-INPUT-OK' },
          { meterId: 'N-INPUT', noticeChannel: 'sms', noticeServedAt: servedDaysAgo(4), noticeDelivery: 'delivered' },
        ],
      },
    });
    expect(imported.status, JSON.stringify(imported.body)).toBe(422);
    expect(imported.body.code).toBe('E_IMPORT_INVALID');
    expect(imported.body.message).toContain('row 2');
    expect(imported.body.details.errors).toEqual([{ row: 2, field: 'noticeReceiptRef', problem: expect.stringContaining('E_NOTICE_NO_EVIDENCE') }]);
    expect(imported.body.details.errors[0].problem).toContain('delivery receipt');
    // And as CSV, where the missing reference is an empty cell.
    const csv = `meterId,noticeChannel,noticeServedAt,noticeDelivery,noticeReceiptRef\nN-INPUT,letter,${servedDaysAgo(4)},delivered,\n`;
    const csvRes = await fetch(`${w.f.gateway.apiUrl}/v1/meters/facts/import`, { method: 'POST', headers: { authorization: `Bearer ${w.f.billingKey}`, 'content-type': 'text/csv', ...w.key() }, body: csv });
    const csvBody = (await csvRes.json()) as any;
    expect(csvRes.status, JSON.stringify(csvBody)).toBe(422);
    expect(csvBody.code).toBe('E_IMPORT_INVALID');
    expect(csvBody.details.errors).toEqual([{ row: 1, field: 'noticeReceiptRef', problem: expect.stringContaining('E_NOTICE_NO_EVIDENCE') }]);
    expect(await noticesOf('N-INPUT')).toEqual([]);

    // Finding 3's end: a plan for this customer is refused for want of a notice, and nothing reaches the wire.
    const plan = await w.plan(['N-INPUT']);
    expect(plan.items['N-INPUT']).toMatchObject({ state: 'refused', why: expect.stringMatching(/^E_NOTICE_MISSING: /) });
    if (plan.items['N-INPUT']!.orderId) expect((await w.order(plan.items['N-INPUT']!.orderId)).state).toBe('refused');
    await nothingOnWire('N-INPUT');
  });

  it('a notice stored before the input check existed (delivered SMS, no receipt) is ignored by the gate: E_NOTICE_MISSING', async () => {
    const row = { id: 'ntc_legacy_n_legacy', meterId: 'N-LEGACY', channel: 'sms', servedAt: w.clock.now() - 4 * DAY, delivery: 'delivered', recordedBy: 'legacy-import', recordedAt: w.clock.now() - 4 * DAY };
    const store = w.f.gateway.config.store;
    if (store.kind === 'postgres' && store.postgres) {
      const pg = (await import('pg')).default;
      const client = new pg.Client({ connectionString: store.postgres.url });
      await client.connect();
      try {
        await client.query(`INSERT INTO ${store.postgres.schema ?? 'public'}.notices (id, meter_id, channel, served_at, delivery, receipt_ref, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7)`, [
          row.id,
          row.meterId,
          row.channel,
          row.servedAt,
          row.delivery,
          row.recordedBy,
          row.recordedAt,
        ]);
      } finally {
        await client.end();
      }
    } else {
      const db = new Database(store.sqlite.path);
      try {
        db.pragma('busy_timeout = 5000');
        db.prepare('INSERT INTO notices (id, meter_id, channel, served_at, delivery, receipt_ref, recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)').run(
          row.id,
          row.meterId,
          row.channel,
          row.servedAt,
          row.delivery,
          row.recordedBy,
          row.recordedAt,
        );
      } finally {
        db.close();
      }
    }
    expect(await noticesOf('N-LEGACY')).toEqual([expect.objectContaining({ id: row.id, channel: 'sms', delivery: 'delivered', receiptRef: null })]);

    const single = await w.single('N-LEGACY', { reason: 'arrears' });
    expect(single.status, JSON.stringify(single.body)).toBe(409);
    expect(single.body.code).toBe('E_NOTICE_MISSING');
    expect(single.body.message).toContain('not evidence');
    const plan = await w.plan(['N-LEGACY']);
    expect(plan.items['N-LEGACY']).toMatchObject({ state: 'refused', why: expect.stringMatching(/^E_NOTICE_MISSING: /) });
    await nothingOnWire('N-LEGACY');
  });

  it('single: an SMS with no delivery receipt is not evidence: refused E_NOTICE_MISSING, nothing on the wire', async () => {
    await smsWithoutReceipt('N-SINGLE', 4);
    const r = await w.single('N-SINGLE', { reason: 'arrears' });
    expect(r.status, JSON.stringify(r.body)).toBe(409);
    expect(r.body.code).toBe('E_NOTICE_MISSING');
    expect(r.body.message).toContain('not evidence');
    expect((await w.order(r.body.details.order.id)).state).toBe('refused');
    await nothingOnWire('N-SINGLE');
  });

  it('bulk: the same SMS: the line is refused E_NOTICE_MISSING, nothing on the wire', async () => {
    await smsWithoutReceipt('N-BULK', 4);
    const r = await w.bulk([{ meterId: 'N-BULK', action: 'disconnect', reason: 'arrears' }]);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body).toMatchObject({ created: 0, refused: 1 });
    const [line] = bulkResults(r);
    expect(line!.state).toBe('refused');
    expect(line!.reason).toMatch(/^E_NOTICE_MISSING: .*not evidence/);
    expect((await w.order(line!.id)).state).toBe('refused');
    await nothingOnWire('N-BULK');
  });

  it('CLI: `meterline disconnect --reason arrears` for the same SMS exits 3 with E_NOTICE_MISSING, nothing on the wire', async () => {
    await smsWithoutReceipt('N-CLI', 4);
    const r = await w.cli(['disconnect', 'N-CLI', '--reason', 'arrears']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain('E_NOTICE_MISSING');
    expect(r.stderr).toContain('not evidence');
    const order = await latestDisconnect('N-CLI');
    expect(order).toMatchObject({ state: 'refused', stateReason: expect.stringMatching(/^E_NOTICE_MISSING: /) });
    await nothingOnWire('N-CLI');
  });

  it('plan: a notice delivered 8 days ago is stale: refused E_NOTICE_STALE, nothing on the wire', async () => {
    await w.serveNotice('N-PLAN', 8);
    const plan = await w.plan(['N-PLAN']);
    expect(plan.items['N-PLAN']).toMatchObject({ state: 'refused', why: expect.stringMatching(/^E_NOTICE_STALE: /) });
    await nothingOnWire('N-PLAN');
  });

  it('retry: a notice 6.5 days old; the first command is dropped; a day later the retry is refused E_NOTICE_STALE; only the dropped command was on the wire', async () => {
    await w.serveNotice('N-RETRY', 6.5);
    w.f.fleet.meter('N-RETRY').dropCommands(1);
    const r = await w.single('N-RETRY', { reason: 'arrears' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const id = r.body.id as string;
    const delivered = await w.secondNoticeDeliveredAt(id);
    w.moveClockTo(delivered + 30 * MIN);
    await w.firstAttemptDropped(id, 'N-RETRY');
    // One jump: the retry is first looked at a day later, when the notice is 7.5 days old.
    await w.advance(DAY, 1);
    await w.waitForReason(id, 'E_NOTICE_STALE');
    const after = await w.order(id);
    expect(after.state).toBe('refused');
    expect(after.attemptsUsed).toBe(1);
    await w.settle();
    expect(w.disconnectsOnWire('N-RETRY')).toBe(1);
    expect(w.f.fleet.meter('N-RETRY').relay).toBe('connected');
  });

  it('restart: a notice 2 days old holds the order E_NOTICE_TOO_RECENT; after a restart and 12 hours it still waits, nothing sent', async () => {
    await w.serveNotice('N-RESTART', 2);
    const servedAt = w.clock.now() - 2 * DAY;
    const r = await w.single('N-RESTART', { reason: 'arrears' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const id = r.body.id as string;
    expect(r.body.state).toBe('held');
    expect(r.body.stateReason).toMatch(/^E_NOTICE_TOO_RECENT: /);
    expect(r.body.nextAttemptAt).toBe(iso(servedAt + 3 * DAY));
    await w.restart();
    await w.advance(12 * HOUR, 6);
    // A change to the meter's facts makes the restarted gateway look at the order again now: the rule answers
    // with the notice's new age, which is the evidence it was judged at this moment.
    await w.setFlags('N-RESTART', { vulnerable: false });
    await w.waitFor('the order judged again, 12 hours on', async () => ((await w.order(id)).stateReason ?? '').includes('is 2.5 days old'));
    const after = await w.order(id);
    expect(after.state).toBe('held');
    expect(after.stateReason).toMatch(/^E_NOTICE_TOO_RECENT: /);
    expect(after.attemptsUsed).toBe(0);
    await nothingOnWire('N-RESTART');
  });

  it('policy change in between: admitted Friday 12:30 (after the window) with a 5-day notice, held to Monday 08:00; at 08:05 the notice is 7.8 days old: refused E_NOTICE_STALE, nothing sent', async () => {
    w.moveClockTo(Date.parse('2026-11-27T12:30:00Z'));
    await w.serveNotice('N-CHANGE', 5);
    const r = await w.single('N-CHANGE', { reason: 'arrears' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const id = r.body.id as string;
    expect(r.body.state).toBe('held');
    expect(r.body.stateReason).toMatch(/^E_OUTSIDE_WINDOW: /);
    expect(r.body.nextAttemptAt).toBe('2026-11-30T08:00:00.000Z');
    w.moveClockTo(Date.parse('2026-11-30T08:05:00Z'));
    await w.waitForReason(id, 'E_NOTICE_STALE');
    const after = await w.order(id);
    expect(after.state).toBe('refused');
    expect(after.attemptsUsed).toBe(0);
    expect((after.notifications ?? []).filter((n: any) => n.kind === 'pre_disconnect_notice')).toEqual([]);
    await nothingOnWire('N-CHANGE');
  });
});
