import { describe, expect, it } from 'vitest';
import { DAY, MIN, safetyWorldForFile } from './safety-harness.js';

/**
 * DOMAIN.md rule 8 (issue 20, finding 1): a meter is cut off for credit only by credit control, only while its
 * ledger shows no credit (emergency credit included), checked again before every attempt. No API key names the
 * reason, whatever path it takes; a top-up or a withdrawn agreement in between stops the cut-off.
 */
const METERS = ['C-SINGLE', 'C-BULK', 'C-PLAN', 'C-CLI', 'C-RETRY', 'C-RESTART', 'C-CHANGE', 'C-OK'];
const w = safetyWorldForFile(METERS);

/** Prepayment mode with an agreement on record (rule 8's precondition). */
const prepayment = async (meterId: string) => {
  await w.setFlags(meterId, { prepaymentMode: true, prepaymentAgreementRef: `PPA-${meterId}` });
};
const topUp = async (meterId: string, amount: number) => {
  const r = await w.http('POST', '/v1/payments', { key: w.f.billingKey, headers: w.key(), body: { meterId, amount, kind: 'top_up', receivedAt: new Date(w.clock.now()).toISOString(), reference: `TOP-${meterId}-${amount}` } });
  expect(r.status).toBe(201);
  return r.body;
};
/** A reading reaches credit control, which finds no credit and orders the cut-off itself; its id. */
const creditControlCutsOff = async (meterId: string): Promise<string> => {
  expect((await w.f.gateway.controller.readNow(meterId)).ok).toBe(true);
  let id: string | undefined;
  await w.waitFor(`credit control's cut-off of ${meterId}`, async () => {
    id = (await w.disconnectOrdersOf(meterId)).find((o) => o.reason === 'credit_exhausted')?.id;
    return id !== undefined;
  });
  return id!;
};

describe('rule 8: a credit cut-off comes only from credit control, while the ledger shows no credit', () => {
  it('control: credit control cuts off a meter with no credit outside friendly hours, and the broker carries the command', async () => {
    await prepayment('C-OK');
    const id = await creditControlCutsOff('C-OK');
    const done = await w.f.waitForOrder(id);
    expect(done).toMatchObject({ state: 'done', origin: 'credit_control', requestedBy: 'credit-control' });
    expect(w.disconnectsOnWire('C-OK')).toBe(1);
    expect(w.f.fleet.meter('C-OK').relay).toBe('disconnected');
  });

  it('single: an operator naming credit_exhausted for a customer in credit is refused with its own code; nothing reaches the wire', async () => {
    await prepayment('C-SINGLE');
    await topUp('C-SINGLE', 50);
    const r = await w.single('C-SINGLE', { reason: 'credit_exhausted' });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('E_CREDIT_CUTOFF_RESERVED');
    // Not even for a meter out of credit: the reason is credit control's, never a caller's.
    const r2 = await w.single('C-OK', { reason: 'credit_exhausted', reference: 'X' });
    expect(r2.body.code).toBe('E_CREDIT_CUTOFF_RESERVED');
    await w.settle();
    expect(await w.disconnectOrdersOf('C-SINGLE')).toEqual([]);
    expect(w.disconnectsOnWire('C-SINGLE')).toBe(0);
    expect(w.f.fleet.meter('C-SINGLE').relay).toBe('connected');
  });

  it('bulk: one credit_exhausted line refuses the whole request; nothing is created, nothing reaches the wire', async () => {
    await prepayment('C-BULK');
    await topUp('C-BULK', 50);
    const r = await w.bulk([
      { meterId: 'C-BULK', action: 'reconnect', reason: 'operator' },
      { meterId: 'C-BULK', action: 'disconnect', reason: 'credit_exhausted' },
    ]);
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ code: 'E_CREDIT_CUTOFF_RESERVED', details: { index: 1, meterId: 'C-BULK' } });
    await w.settle();
    expect(await w.ordersOf('C-BULK')).toEqual([]);
    expect(w.disconnectsOnWire('C-BULK')).toBe(0);
  });

  it('plan: a plan cannot cut off for credit, even approved by a supervisor', async () => {
    await prepayment('C-PLAN');
    await topUp('C-PLAN', 50);
    const draft = await w.http('POST', '/v1/plans', { headers: w.key(), body: { reason: 'credit_exhausted', windowFrom: new Date(w.clock.now()).toISOString(), windowTo: new Date(w.clock.now() + DAY).toISOString(), meters: ['C-PLAN'] } });
    expect(draft.status).toBe(403);
    expect(draft.body.code).toBe('E_CREDIT_CUTOFF_RESERVED');
    expect((await w.http('GET', '/v1/plans')).body.items.filter((p: any) => p.items.some((i: any) => i.meterId === 'C-PLAN'))).toEqual([]);
    await w.settle();
    expect(w.disconnectsOnWire('C-PLAN')).toBe(0);
  });

  it('CLI: `meterline disconnect --reason credit_exhausted` exits 5 with the code; nothing reaches the wire', async () => {
    await prepayment('C-CLI');
    await topUp('C-CLI', 50);
    const r = await w.cli(['disconnect', 'C-CLI', '--reason', 'credit_exhausted', '--reference', 'ticket-1']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('E_CREDIT_CUTOFF_RESERVED');
    // Asked without a reason, the CLI offers only what the key may use.
    const offered = await w.cli(['disconnect', 'C-CLI']);
    expect(offered.code).toBe(2);
    expect(offered.stderr).not.toContain('credit_exhausted');
    await w.settle();
    expect(w.disconnectsOnWire('C-CLI')).toBe(0);
  });

  it('retry: credit control’s cut-off whose first command the meter dropped is not retried once the customer has topped up', async () => {
    await prepayment('C-RETRY');
    w.f.fleet.meter('C-RETRY').dropCommands(1);
    const id = await creditControlCutsOff('C-RETRY');
    await w.waitFor('the first attempt to fail', async () => (await w.order(id)).attemptsUsed >= 1 && (await w.order(id)).state === 'queued');
    expect(w.disconnectsOnWire('C-RETRY')).toBe(1); // the dropped one
    await topUp('C-RETRY', 50);
    await w.advance(5 * MIN);
    const after = await w.order(id);
    expect(after.state).toBe('cancelled');
    expect(w.disconnectsOnWire('C-RETRY')).toBe(1);
    expect(w.f.fleet.meter('C-RETRY').relay).toBe('connected');
  });

  it('restart: a cut-off waiting for friendly hours to end, then a top-up and a restart: at 10:00 nothing is sent', async () => {
    w.clock.set(Date.parse('2026-11-24T17:00:00Z')); // friendly-credit hours: the cut-off waits for 10:00 tomorrow
    await prepayment('C-RESTART');
    const id = await creditControlCutsOff('C-RESTART');
    expect(['held', 'queued']).toContain((await w.order(id)).state);
    await topUp('C-RESTART', 50);
    await w.restart();
    w.clock.set(Date.parse('2026-11-25T10:05:00Z'));
    await w.settle(800);
    expect((await w.order(id)).state).toBe('cancelled');
    expect(w.disconnectsOnWire('C-RESTART')).toBe(0);
  });

  it('policy change: the prepayment agreement withdrawn while the cut-off waits: refused before its attempt, nothing sent', async () => {
    w.clock.set(Date.parse('2026-11-25T17:00:00Z'));
    await prepayment('C-CHANGE');
    const id = await creditControlCutsOff('C-CHANGE');
    expect(['held', 'queued']).toContain((await w.order(id)).state);
    await w.setFlags('C-CHANGE', { prepaymentMode: false });
    w.clock.set(Date.parse('2026-11-26T10:05:00Z'));
    await w.settle(800);
    const after = await w.order(id);
    expect(after.state).toBe('refused');
    expect(after.stateReason).toMatch(/^E_NO_PREPAYMENT_AGREEMENT: /);
    expect(w.disconnectsOnWire('C-CHANGE')).toBe(0);
  });
});
