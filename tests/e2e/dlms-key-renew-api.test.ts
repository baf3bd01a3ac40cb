import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';

/**
 * Issue 15 item 3, renewing a meter's keys through the API: POST /v1/meters/{id}/keys/renew on a gateway with a key
 * master and an HLS-GMAC meter behind a TCP wrapper link. The meter takes new keys (global_key_transfer), the gateway
 * proves and confirms them and switches the meter with them; a meter that refuses keeps its keys and is still
 * switched; a key set without a KEK is refused before the wire. Answers and audit carry key set ids only.
 * On SQLite and PostgreSQL.
 */

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const pgSchemas: string[] = [];
const ST = (n: number) => `4D4D4D00000000${n.toString(16).padStart(2, '0')}`;
const simKeys = (): SimMeterKeys & { masterKey: Buffer } => ({ encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), masterKey: randomBytes(16), systemTitle: Buffer.alloc(8) });

afterAll(async () => {
  if (pgSchemas.length === 0) return;
  const c = new pg.Client({ connectionString: DATABASE_URL });
  await c.connect();
  for (const s of pgSchemas) await c.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  await c.end();
});

describe.each(['sqlite', 'postgres'] as const)('POST /v1/meters/{id}/keys/renew (%s)', (kind) => {
  let sim: DlmsTcpServer;
  let gateway: RunningGateway;
  const keys = { 'RN-1': simKeys(), 'RN-2': simKeys(), 'RN-3': simKeys() };
  const answers: string[] = [];
  let logText = '';
  let n = 0;

  const call = async (method: string, path: string, o: { key?: string | null; body?: unknown; idem?: string | null } = {}) => {
    const key = o.key === undefined ? gateway.demoKeys!.admin : o.key;
    const idem = o.idem === undefined ? `renew-${kind}-${++n}` : o.idem;
    const res = await fetch(gateway.apiUrl + path, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(method !== 'GET' && idem ? { 'idempotency-key': idem } : {}) },
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    });
    const text = await res.text();
    answers.push(text);
    return { status: res.status, body: JSON.parse(text) as any };
  };
  const waitForOrder = async (id: string) => {
    const until = Date.now() + 20_000;
    for (;;) {
      const o = (await call('GET', `/v1/orders/${id}`)).body;
      if (['done', 'armed', 'failed', 'cancelled', 'escalated'].includes(o.state) || Date.now() > until) return o;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const reconnect = async (meterId: string) => {
    sim.meter(meterId).setRelay('disconnected');
    const res = await call('POST', `/v1/meters/${meterId}/reconnect`, { key: gateway.demoKeys!.billing, body: { reason: 'payment' } });
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    return waitForOrder(res.body.id);
  };

  beforeAll(async () => {
    Object.values(keys).forEach((k, i) => (k.systemTitle = Buffer.from(ST(i + 1), 'hex')));
    sim = new DlmsTcpServer({
      mode: 'wrapper',
      port: 0,
      logger: pino({ level: 'silent' }),
      meters: Object.entries(keys).map(([meterId, k], i) => ({ meterId, physicalAddress: 41 + i, logicalAddress: 41 + i, controlMode: 6 as const, keys: k, initialRelay: 'disconnected' as const })),
    });
    await sim.start();
    const dir = mkdtempSync(join(tmpdir(), 'ml-renew-'));
    const schema = `ml_renew_${randomBytes(5).toString('hex')}`;
    if (kind === 'postgres') pgSchemas.push(schema);
    const base = loadConfig({});
    const config = ConfigSchema.parse({
      ...base,
      instanceId: 'renew',
      api: { ...base.api, host: '127.0.0.1', port: 0 },
      mqtt: { ...base.mqtt, mode: 'embedded', embeddedPort: 0 },
      store:
        kind === 'sqlite'
          ? { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db') }, postgres: null }
          : { kind: 'postgres', sqlite: { path: 'unused.db' }, postgres: { url: DATABASE_URL, schema, maxConnections: 4 } },
      audit: { ...base.audit, keyFile: join(dir, 'audit.key'), anchorFile: join(dir, 'audit-anchors.jsonl') },
      auth: { keys: [], demoKeys: true },
      fleet: { seed: null },
      simulator: { ...base.simulator, inProcess: false },
      demo: { reconnectEveryMs: 0 },
      control: { ...base.control, tickMs: 50 },
      log: { level: 'silent' },
      dlms: { ports: {}, tcp: { 'dc-1': { kind: 'wrapper', host: '127.0.0.1', port: sim.port, maxConnections: 2, connectTimeoutMs: 1000, reconnectMs: 100 } }, passwords: { 'kam-omnipower-dlms-mode1': { value: 'unused-1' }, 'lgz-e570-dlms-mode2': { value: 'unused-2' } } },
    });
    gateway = await startGateway(config, { logger: pino({ level: 'trace' }, { write: (line: string) => void (logText += line) }), env: { METERLINE_KEY_MASTER: randomBytes(32).toString('hex') } });
    for (const [i, meterId] of Object.keys(keys).entries()) {
      const res = await call('PUT', `/v1/meters/${meterId}`, { key: gateway.demoKeys!.operator, body: { profileId: 'idis-hls-gmac-mode6', link: 'dc-1', region: 'north', address: String(41 + i) } });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    const row = (id: keyof typeof keys, kek: boolean) => [id, keys[id].systemTitle.toString('hex'), keys[id].encryptionKey.toString('hex'), keys[id].authenticationKey.toString('hex'), kek ? keys[id].masterKey.toString('hex') : ''].join(',');
    const csv = `meter id,system title,GUEK,GAK,KEK\n${row('RN-1', true)}\n${row('RN-2', true)}\n${row('RN-3', false)}\n`;
    const imported = await call('POST', '/v1/meter-keys/import', { body: { format: 'csv', content: csv } });
    expect(imported.status, JSON.stringify(imported.body)).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    await sim?.stop();
  });

  it('admin only, auth first, and an Idempotency-Key is required', async () => {
    expect((await call('POST', '/v1/meters/RN-1/keys/renew', { key: null })).status).toBe(401);
    expect((await call('POST', '/v1/meters/RN-1/keys/renew', { key: gateway.demoKeys!.operator })).status).toBe(403);
    expect(await call('POST', '/v1/meters/RN-1/keys/renew', { idem: null })).toMatchObject({ status: 400, body: { code: 'E_IDEMPOTENCY_KEY_MISSING' } });
    expect(await call('POST', '/v1/meters/NOPE/keys/renew')).toMatchObject({ status: 404, body: { code: 'E_METER_NOT_FOUND' } });
    expect(sim.simMeter('RN-1').counters.keyTransfers).toBe(0);
  });

  it('renews: 200 with the new key set current, the meter holds new keys, a replay changes nothing, and the meter is switched with the new keys', async () => {
    const before = (await call('GET', '/v1/meters/RN-1/keys')).body.keySets[0].keySetId as string;
    const res = await call('POST', '/v1/meters/RN-1/keys/renew', { idem: `renew-once-${kind}` });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ meterId: 'RN-1', state: 'current', previousKeySetId: before });
    expect(res.body.keySetId).not.toBe(before);
    const m = sim.simMeter('RN-1');
    expect(m.counters.keyTransfers).toBe(1);
    expect(m.keys!.encryptionKey.equals(keys['RN-1'].encryptionKey)).toBe(false);
    expect((await gateway.keyring.keysFor('RN-1'))!.encryptionKey.equals(m.keys!.encryptionKey)).toBe(true);
    const sets = (await call('GET', '/v1/meters/RN-1/keys')).body.keySets as { keySetId: string; state: string }[];
    expect(sets.map((s) => [s.keySetId, s.state]).sort()).toEqual([[before, 'retired'], [res.body.keySetId, 'current']].sort());
    const replay = await call('POST', '/v1/meters/RN-1/keys/renew', { idem: `renew-once-${kind}` });
    expect(replay.body).toEqual(res.body);
    expect(m.counters.keyTransfers).toBe(1);

    const order = await reconnect('RN-1');
    expect(order.state).toBe('armed');
    expect(order.attempts.at(-1).evidence.command ?? JSON.stringify(order.attempts.at(-1).evidence)).toContain(res.body.keySetId);
    expect(m.counters.hlsFailures).toBe(0);
  });

  it('a meter that refuses the transfer: 502 E_KEY_RENEWAL_FAILED, it keeps its keys (the staged set retired) and is still switched', async () => {
    const before = (await call('GET', '/v1/meters/RN-2/keys')).body.keySets[0].keySetId as string;
    const m = sim.simMeter('RN-2');
    m.faults.refuseKeyTransfer = true;
    const res = await call('POST', '/v1/meters/RN-2/keys/renew');
    m.faults.refuseKeyTransfer = false;
    expect(res).toMatchObject({ status: 502, body: { code: 'E_KEY_RENEWAL_FAILED' } });
    expect(res.body.message).toMatch(new RegExp(`RN-2.*keeps its key set ${before}`));
    expect(m.keys!.encryptionKey.equals(keys['RN-2'].encryptionKey)).toBe(true);
    const sets = (await call('GET', '/v1/meters/RN-2/keys')).body.keySets as { keySetId: string; state: string }[];
    expect(sets.find((s) => s.state === 'current')?.keySetId).toBe(before);
    expect(sets.filter((s) => s.state === 'pending')).toEqual([]);
    expect(sets.filter((s) => s.state === 'retired')).toHaveLength(1);
    expect((await reconnect('RN-2')).state).toBe('armed');
  });

  it('a key set without a master key (KEK): 409 E_KEY_RENEWAL_UNSUPPORTED, nothing staged, nothing sent', async () => {
    const res = await call('POST', '/v1/meters/RN-3/keys/renew');
    expect(res).toMatchObject({ status: 409, body: { code: 'E_KEY_RENEWAL_UNSUPPORTED' } });
    expect(res.body.message).toMatch(/no master key \(KEK\)/);
    expect((await call('GET', '/v1/meters/RN-3/keys')).body.keySets).toHaveLength(1);
    expect(sim.simMeter('RN-3').counters.keyTransfers + sim.simMeter('RN-3').counters.keyTransfersRefused).toBe(0);
  });

  it('the audit names key set ids only; no key (old or new) appears in any answer or in the log', async () => {
    const audit = await call('GET', '/v1/audit?limit=1000');
    const renewals = (audit.body.entries ?? audit.body.items ?? audit.body).filter((e: any) => e.action === 'meter_keys.renew');
    expect(renewals.map((e: any) => [e.target, e.details.outcome])).toEqual(expect.arrayContaining([['RN-1', 'confirmed'], ['RN-2', 'refused']]));
    const all = [...Object.values(keys), ...['RN-1', 'RN-2', 'RN-3'].map((id) => sim.simMeter(id).keys!)];
    expect(logText).toContain('meter key renewal');
    const places = { answers: answers.join('\n'), log: logText };
    for (const [where, text] of Object.entries(places)) {
      for (const k of all) for (const b of [k.encryptionKey, k.authenticationKey, k.masterKey!]) {
        expect(text.toLowerCase(), where).not.toContain(b.toString('hex'));
        expect(text, where).not.toContain(b.toString('base64'));
      }
    }
  });
});
