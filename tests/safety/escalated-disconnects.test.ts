import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { startWebhookReceiver, type WebhookReceiver } from '../harness/webhook-receiver.js';
import { customerRequest, MIN, startSafetyWorld, type SafetyWorld } from './safety-harness.js';

/**
 * Escalated disconnects (with `escalation.disconnectFailures`): a disconnect that failed remotely becomes a field work
 * order while remote retries go on slowly. A crew must never be sent to cut a customer a rule now protects: when the
 * rules forbid the disconnect, the order and its work order are cancelled, the field-service system is told, and no
 * remote retry goes out.
 */
let w: SafetyWorld;
let field: WebhookReceiver;

beforeAll(async () => {
  field = await startWebhookReceiver('field-service-secret-01');
  const base = loadConfig({});
  w = await startSafetyWorld(['E-MED', 'E-MODE', 'E-OK'], {
    config: {
      escalation: { ...base.escalation, disconnectFailures: true, slowRetryMs: 30 * MIN },
      fieldService: { webhookUrl: field.url, secret: 'field-service-secret-01' },
    },
  });
}, 60_000);
afterAll(async () => {
  await w?.close();
  await field?.close();
});

/** A customer-requested disconnect whose every remote attempt fails: escalated to the field. */
async function escalatedDisconnect(meterId: string): Promise<string> {
  w.f.fleet.meter(meterId).dropCommands(100);
  const r = await w.single(meterId, customerRequest(meterId));
  expect(r.status).toBe(202);
  const id = r.body.id as string;
  for (let i = 0; i < 40 && (await w.order(id)).state !== 'escalated'; i++) await w.advance(2_000, 2);
  expect((await w.order(id)).state).toBe('escalated');
  await w.waitFor('the work order at the field system', () => field.received.some((x) => x.kind === 'work_order.created' && x.body.orderId === id));
  return id;
}

describe('escalated disconnects pass the rules too', () => {
  it('control: the meter answers again and the slow remote retry disconnects it; the work order is cancelled', async () => {
    const id = await escalatedDisconnect('E-OK');
    const sent = w.disconnectsOnWire('E-OK');
    w.f.fleet.meter('E-OK').dropCommands(0);
    await w.advance(31 * MIN);
    expect((await w.f.waitForOrder(id)).state).toBe('done');
    expect(w.disconnectsOnWire('E-OK')).toBe(sent + 1);
    expect(w.f.fleet.meter('E-OK').relay).toBe('disconnected');
    const wo = (await w.http('GET', '/v1/work-orders?limit=100')).body.items.find((x: any) => x.orderId === id);
    expect(wo.status).toBe('cancelled');
  });

  it('the customer is found to rely on medical equipment: the order and its work order are cancelled at once, the crew is told, nothing more is sent', async () => {
    const id = await escalatedDisconnect('E-MED');
    const sent = w.disconnectsOnWire('E-MED');
    await w.setFlags('E-MED', { medicalEquipment: true });
    // No clock change: the flag change itself has the gate look again.
    await w.waitFor('the order cancelled', async () => (await w.order(id)).state === 'cancelled');
    expect((await w.order(id)).stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    await w.waitFor('the field system told', () => field.received.some((x) => x.kind === 'work_order.cancelled' && x.body.orderId === id));
    const wo = (await w.http('GET', '/v1/work-orders?limit=100')).body.items.find((x: any) => x.orderId === id);
    expect(wo.status).toBe('cancelled');
    w.f.fleet.meter('E-MED').dropCommands(0);
    await w.advance(2 * 31 * MIN);
    expect(w.disconnectsOnWire('E-MED')).toBe(sent);
    expect(w.f.fleet.meter('E-MED').relay).toBe('connected');
  });

  it('the meter is put in protected mode: the escalated disconnect ends, nothing more is sent', async () => {
    const id = await escalatedDisconnect('E-MODE');
    const sent = w.disconnectsOnWire('E-MODE');
    await w.setFlags('E-MODE', { protectedMode: true });
    await w.waitFor('the order cancelled', async () => (await w.order(id)).state === 'cancelled');
    expect((await w.order(id)).stateReason).toMatch(/^E_PROTECTED_MODE: /);
    w.f.fleet.meter('E-MODE').dropCommands(0);
    await w.advance(2 * 31 * MIN);
    expect(w.disconnectsOnWire('E-MODE')).toBe(sent);
  });
});
