import { readFileSync, existsSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/api/auth.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { startWebhookReceiver, type WebhookReceiver } from '../harness/webhook-receiver.js';

/**
 * Issue 14 items 5 and 6 (DESIGN.md §8): secrets are shown once and never stored; an identity is an id, a name is only
 * a label. Run against the gateway as deployed (real HTTP, real store file or PostgreSQL schema, real mosquitto).
 */
const CLOSES = 'acme-em340-fw2.4';
const meters: TestMeter[] = [
  { meterId: 'ID-REC', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'ID-PLAN', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'ID-APPROVE', profileId: CLOSES, initialRelay: 'connected' },
];
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

let f: GatewayFixture;
let billingEndpoint: WebhookReceiver;
let n = 0;
const k = () => ({ 'idempotency-key': `identity-${++n}` });

beforeAll(async () => {
  billingEndpoint = await startWebhookReceiver('a-long-shared-secret-0001');
  f = await startGatewayFixture(meters);
}, 60_000);
afterAll(async () => {
  await f?.stop();
  await billingEndpoint?.close();
});

/** Every byte the store keeps: the SQLite file with its WAL, or every row of every table in the PostgreSQL schema. */
async function storedText(): Promise<Buffer> {
  const store = f.gateway.config.store;
  if (store.kind === 'sqlite') {
    const path = store.sqlite.path;
    return Buffer.concat([path, `${path}-wal`, `${path}-shm`].filter((p) => existsSync(p)).map((p) => readFileSync(p)));
  }
  const client = new pg.Client({ connectionString: store.postgres!.url });
  await client.connect();
  try {
    const schema = store.postgres!.schema!;
    const tables = (await client.query('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schema])).rows.map((r: { table_name: string }) => r.table_name);
    expect(tables).toContain('idempotent_responses');
    expect(tables).toContain('api_keys');
    const rows: string[] = [];
    for (const t of tables) rows.push(...(await client.query(`SELECT t::text AS row FROM ${schema}."${t}" t`)).rows.map((r: { row: string }) => r.row));
    return Buffer.from(rows.join('\n'));
  } finally {
    await client.end();
  }
}
const newKey = async (body: Record<string, string>) => {
  const made = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body });
  expect(made.status, JSON.stringify(made.body)).toBe(201);
  return made.body as { id: string; clientId: string; name: string; role: string; key: string };
};
const waitFor = async (what: string, cond: () => Promise<boolean>) => {
  const until = Date.now() + 15_000;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 40));
  }
};

describe('secrets are shown once and never stored (item 5)', () => {
  it('a new key and a rotated one: the secret is in the first answer only; a replay returns the key without it; the store holds only its hash', async () => {
    const headers = { 'idempotency-key': 'make-crew-west' };
    const body = { name: 'crew-west', role: 'field' };
    const made = await f.http('POST', '/v1/keys', { key: f.adminKey, headers, body });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const secret = made.body.key as string;
    expect(secret).toMatch(/^fie_/);
    expect((await f.http('GET', '/v1/whoami', { key: secret })).body).toMatchObject({ name: 'crew-west', role: 'field' });

    const replay = await f.http('POST', '/v1/keys', { key: f.adminKey, headers, body });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).not.toHaveProperty('key');
    expect(replay.body).toEqual({ ...made.body, key: undefined });

    const rotateHeaders = { 'idempotency-key': 'rotate-crew-west' };
    const rotated = await f.http('POST', `/v1/keys/${made.body.id}/rotate`, { key: f.adminKey, headers: rotateHeaders });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    const secret2 = rotated.body.key as string;
    expect(secret2).not.toBe(secret);
    expect((await f.http('GET', '/v1/whoami', { key: secret })).status).toBe(401);
    const rotatedAgain = await f.http('POST', `/v1/keys/${made.body.id}/rotate`, { key: f.adminKey, headers: rotateHeaders });
    expect(rotatedAgain.headers.get('idempotent-replayed')).toBe('true');
    expect(rotatedAgain.body).toEqual({ ...rotated.body, key: undefined });
    expect((await f.http('GET', '/v1/whoami', { key: secret2 })).status).toBe(200); // the replay rotated nothing

    const stored = await storedText();
    expect(stored.includes(sha256Hex(secret2)), 'the scan sees what was just written (the hash)').toBe(true);
    for (const s of [secret, secret2]) {
      expect(stored.includes(s), `the store holds the secret ${s.slice(0, 6)}…`).toBe(false);
      expect(stored.includes(s.slice(4)), 'nor its random part').toBe(false);
    }
    const exported = await f.http('GET', '/v1/audit/export?format=ndjson', { key: f.adminKey });
    expect(exported.status).toBe(200);
    expect(exported.body).toContain(made.body.id);
    for (const s of [secret, secret2]) expect(String(exported.body)).not.toContain(s);
    // Rotation keeps the key's identity.
    expect(rotated.body.clientId).toMatch(/^cli_/);
    expect(rotated.body.clientId).toBe(made.body.clientId);
    expect((await f.http('GET', '/v1/whoami', { key: secret2 })).body.clientId).toBe(made.body.clientId);
  });
});

describe('a client is an id, a name is only a label (item 6)', () => {
  it('a key named like an existing billing client is another client: it sees none of its payments, reconciliation or changes, and cannot change its callback URL', async () => {
    // The billing system (the configured demo-billing client): a callback URL, a payment, a reconnect and its event.
    const put = await f.http('PUT', '/v1/callbacks', { key: f.billingKey, headers: k(), body: { url: billingEndpoint.url, secret: 'a-long-shared-secret-0001' } });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body.client).toBe('demo-billing');
    const paid = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'ID-REC', amount: 30, receivedAt: iso(Date.now() - 60_000), reference: 'BANK-REAL-1' } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(201);
    const reconnect = await f.http('POST', '/v1/meters/ID-REC/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment', paymentReceivedAt: iso(Date.now() - 60_000) } });
    expect(reconnect.status, JSON.stringify(reconnect.body)).toBe(202);
    await waitFor('the reconnect event in the billing client’s feed', async () => (await f.http('GET', '/v1/changes?after=0', { key: f.billingKey })).body.items.some((e: any) => e.meterId === 'ID-REC' && e.kind === 'order.done'));
    const day = new Date().toISOString().slice(0, 10);
    const own = (await f.http('GET', `/v1/reconciliation?day=${day}`, { key: f.billingKey })).body;
    expect(own).toMatchObject({ client: 'demo-billing', payments: 1 });

    // An administrator makes a key named like it: a new client that carries the same label.
    const lookalike = await newKey({ name: 'demo-billing', role: 'billing' });
    expect(lookalike.name).toBe('demo-billing');
    expect(lookalike.clientId).not.toBe('demo-billing');
    const as = (path: string) => f.http('GET', path, { key: lookalike.key });
    expect((await as('/v1/payments')).body.items).toEqual([]);
    expect((await as(`/v1/reconciliation?day=${day}`)).body).toMatchObject({ client: lookalike.clientId, payments: 0 });
    expect((await as('/v1/changes?after=0')).body.items).toEqual([]);
    expect((await as('/v1/callbacks/deliveries?after=0')).body.items).toEqual([]);
    // Its callback registration is its own; the billing system's URL stays, and its events still go there.
    const hijack = await f.http('PUT', '/v1/callbacks', { key: lookalike.key, headers: k(), body: { url: 'https://attacker.example/cb', secret: 'attacker-secret-000001' } });
    expect(hijack.status).toBe(200);
    expect(hijack.body.client).toBe(lookalike.clientId);
    expect((await f.gateway.store.getCallback('demo-billing'))?.url).toBe(billingEndpoint.url);
    // Nor can it reuse the billing system's Idempotency-Keys to read its answers: its key is its own.
    const again = await f.http('PUT', '/v1/callbacks', { key: lookalike.key, headers: { 'idempotency-key': 'identity-1' }, body: { url: billingEndpoint.url, secret: 'a-long-shared-secret-0001' } });
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.body.client).toBe(lookalike.clientId);
    await f.http('PUT', '/v1/callbacks', { key: lookalike.key, headers: k(), body: { url: 'https://attacker.example/cb', secret: 'attacker-secret-000001' } });
    const next = await f.http('POST', '/v1/meters/ID-REC/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment', paymentReceivedAt: iso(Date.now() - 30_000) } });
    await waitFor('the next event at the billing system’s own URL, signed with its own secret', async () => billingEndpoint.received.some((r) => JSON.stringify(r.body).includes(next.body.id) && r.signatureValid));
    // The billing system still sees all of its own.
    expect((await f.http('GET', '/v1/payments', { key: f.billingKey })).body.items.map((p: any) => p.reference)).toContain('BANK-REAL-1');
    expect((await f.http('GET', `/v1/reconciliation?day=${day}`, { key: f.billingKey })).body).toMatchObject({ client: 'demo-billing', payments: 1 });

    // The same between two clients created through the API under one label.
    const erp = await newKey({ name: 'erp', role: 'billing' });
    expect((await f.http('POST', '/v1/payments', { key: erp.key, headers: k(), body: { meterId: 'ID-REC', amount: 5, receivedAt: iso(Date.now() - 60_000), reference: 'ERP-1' } })).status).toBe(201);
    const erp2 = await newKey({ name: 'erp', role: 'billing' });
    expect(erp2.clientId).not.toBe(erp.clientId);
    expect((await f.http('GET', '/v1/payments', { key: erp2.key })).body.items).toEqual([]);
    // A key issued to the client by its id is that client.
    const erpNext = await newKey({ clientId: erp.clientId, role: 'billing' });
    expect(erpNext).toMatchObject({ clientId: erp.clientId, name: 'erp' });
    expect((await f.http('GET', '/v1/payments', { key: erpNext.key })).body.items.map((p: any) => p.reference)).toEqual(['ERP-1']);
    // An operator reads a client's reconciliation by its id.
    expect((await f.http('GET', `/v1/reconciliation?day=${day}&client=${erp.clientId}`)).body).toMatchObject({ client: erp.clientId, payments: 1 });
  });

  it('maker–checker compares identities: a supervisor key made for a plan’s author cannot approve it; another person with the same label can', async () => {
    const alice = await newKey({ name: 'alice', role: 'operator' });
    const aliceSupervisor = await newKey({ clientId: alice.clientId, role: 'supervisor' });
    const otherAlice = await newKey({ name: 'alice', role: 'supervisor' });
    expect(otherAlice.clientId).not.toBe(alice.clientId);
    expect((await f.http('GET', '/v1/whoami', { key: aliceSupervisor.key })).body).toMatchObject({ clientId: alice.clientId, name: 'alice', role: 'supervisor' });

    const draft = await f.http('POST', '/v1/plans', { key: alice.key, headers: k(), body: { reason: 'arrears', windowFrom: iso(Date.now() - HOUR), windowTo: iso(Date.now() + 24 * HOUR), meters: ['ID-PLAN'] } });
    expect(draft.status, JSON.stringify(draft.body)).toBe(201);
    expect(draft.body.author).toBe(alice.clientId);
    const self = await f.http('POST', `/v1/plans/${draft.body.id}/approve`, { key: aliceSupervisor.key, headers: k() });
    expect(self.status).toBe(403);
    expect(self.body.code).toBe('E_SELF_APPROVAL');
    const other = await f.http('POST', `/v1/plans/${draft.body.id}/approve`, { key: otherAlice.key, headers: k() });
    expect(other.status, JSON.stringify(other.body)).toBe(200);
    expect(other.body).toMatchObject({ status: 'approved', author: alice.clientId, decidedBy: otherAlice.clientId });

    // One order waiting for a supervisor (a protected customer's customer_request): the same.
    expect((await f.http('PUT', '/v1/meters/ID-APPROVE/flags', { key: f.billingKey, headers: k(), body: { vulnerable: true } })).status).toBe(200);
    const asked = await f.http('POST', '/v1/meters/ID-APPROVE/disconnect', { key: alice.key, headers: k(), body: { reason: 'customer_request', reference: 'CRM-ALICE-1' } });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    expect(asked.body.requestedBy).toBe(alice.clientId);
    await waitFor('the order to wait for approval', async () => ((await f.http('GET', `/v1/orders/${asked.body.id}`)).body.stateReason ?? '').startsWith('E_APPROVAL_REQUIRED'));
    const selfApproval = await f.http('POST', `/v1/orders/${asked.body.id}/approve`, { key: aliceSupervisor.key, headers: k() });
    expect(selfApproval.status).toBe(403);
    expect(selfApproval.body.code).toBe('E_SELF_APPROVAL');
    const approved = await f.http('POST', `/v1/orders/${asked.body.id}/approve`, { key: otherAlice.key, headers: k() });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body).toMatchObject({ requestedBy: alice.clientId, approvedBy: otherAlice.clientId });
  });

  it('an unknown client id is refused and creates nothing; exactly one of clientId or name', async () => {
    const before = (await f.http('GET', '/v1/keys', { key: f.adminKey })).body.items.length;
    const unknown = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { clientId: 'cli_0000000000000000', role: 'billing' } });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('E_CLIENT_NOT_FOUND');
    for (const body of [{ role: 'billing' }, { name: 'x', clientId: 'demo-billing', role: 'billing' }]) {
      const bad = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body });
      expect(bad.status).toBe(400);
    }
    expect((await f.http('GET', '/v1/keys', { key: f.adminKey })).body.items.length).toBe(before);
  });
});
