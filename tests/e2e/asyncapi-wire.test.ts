import { Ajv, type ValidateFunction } from 'ajv';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { profileKey, RESPONSE_CHANNEL_ID } from '../../src/api/asyncapi-document.js';
import type { Clock } from '../../src/control/clock.js';
import { asyncApiErrors } from '../contracts/asyncapi-validate.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * The AsyncAPI document against the wire (issue 18 item 2): the gateway switches simulated meters of each MQTT profile
 * over a real mosquitto (disconnect, reconnect, read-backs, a limit, a nack, an expired command, a button press), an
 * independent client subscribed to `#` records every message, and each is matched to its channel by topic and
 * validated with ajv against the payload schema of the document the running gateway serves at GET /asyncapi.json.
 * The semantics the document states are checked on the same traffic.
 */
const ACME = 'acme-em340-fw2.4'; // closes, has a limiter, answers on the MQTT 5 Response Topic
const VOLTA = 'volta-pp20-fw1.7'; // arms, no limiter, fixed reply topic
const PROFILE_OF: Record<string, string> = { 'AW-A1': ACME, 'AW-NACK': ACME, 'AW-EXP': ACME, 'AW-V1': VOLTA };

interface Recorded {
  topic: string;
  text: string;
  qos: number;
  retain: boolean;
  responseTopic?: string;
  correlationData?: string;
}

/** The meters' own clock: the real one, or ahead of it (a command then arrives after its `exp` as the meter sees it). */
let meterAheadMs = 0;
const meterClock: Clock = { now: () => Date.now() + meterAheadMs };

let f: GatewayFixture;
let recorder: mqtt.MqttClient;
const wire: Recorded[] = [];
let doc: any;
let n = 0;
const k = () => ({ 'idempotency-key': `aw-${process.pid}-${++n}` });
const command = (meterId: string, action: 'disconnect' | 'reconnect') =>
  action === 'disconnect'
    ? f.http('POST', `/v1/meters/${meterId}/disconnect`, { headers: k(), body: { reason: 'customer_request', reference: `REQ-${meterId}-${n}` } })
    : f.http('POST', `/v1/meters/${meterId}/reconnect`, { key: f.billingKey, headers: k(), body: { reason: 'payment', paymentReceivedAt: new Date().toISOString() } });
const limit = (meterId: string, limitW: number | null) =>
  f.http('POST', `/v1/meters/${meterId}/limit`, { headers: k(), body: limitW === null ? { limitW, reason: 'operator' } : { limitW, reason: 'customer_request', reference: `REQ-L-${n}` } });
async function waitFor(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}
async function ordered(res: { status: number; body: any }, states: string[] = ['done']): Promise<any> {
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const o = await f.waitForOrder(res.body.id);
  expect(states, JSON.stringify(o.events)).toContain(o.state);
  return o;
}

const json = (r: Recorded): any => JSON.parse(r.text);
const commands = () => wire.filter((r) => channelOf(r)?.kind === 'command');
const replies = () => wire.filter((r) => channelOf(r)?.kind === 'reply');
const statuses = () => wire.filter((r) => channelOf(r)?.kind === 'status');

/** The document's channel a topic belongs to, the meter it names and the message (per profile) it must carry. */
function channelOf(r: Recorded): { id: string; kind: 'command' | 'reply' | 'status'; meterId: string; messageRef: string } | undefined {
  for (const [id, c] of Object.entries<any>(doc.channels)) {
    const names: string[] = [];
    const pattern = new RegExp(`^${String(c.address).replace(/\{(\w+)\}/g, (_m: string, name: string) => (names.push(name), '([^/]+)'))}$`);
    const m = pattern.exec(r.topic);
    if (!m) continue;
    const meterId = m[names.indexOf('meterId') + 1]!;
    const profileId = PROFILE_OF[meterId];
    if (profileId === undefined) continue;
    if (id === RESPONSE_CHANNEL_ID) return { id, kind: 'reply', meterId, messageRef: c.messages[`${profileKey(profileId)}-reply`]?.$ref };
    if (!id.startsWith(`${profileKey(profileId)}-`)) continue; // another profile's channel at a topic of the same shape
    const [only] = Object.values<any>(c.messages);
    return { id, kind: id.endsWith('-command') ? 'command' : id.endsWith('-reply') ? 'reply' : 'status', meterId, messageRef: only.$ref };
  }
  return undefined;
}

beforeAll(async () => {
  f = await startGatewayFixture(
    [
      { meterId: 'AW-A1', profileId: ACME, initialRelay: 'connected' },
      { meterId: 'AW-NACK', profileId: ACME, initialRelay: 'connected' },
      { meterId: 'AW-EXP', profileId: ACME, initialRelay: 'connected' },
      { meterId: 'AW-V1', profileId: VOLTA, initialRelay: 'disconnected' },
    ],
    {},
    { meterClock },
  );
  recorder = mqtt.connect(f.broker.url, { clientId: `asyncapi-recorder-${process.pid}`, protocolVersion: 5 });
  recorder.on('message', (topic, payload, packet) => {
    const p = packet.properties;
    wire.push({
      topic,
      text: payload.toString('utf8'),
      qos: packet.qos,
      retain: packet.retain,
      ...(p?.responseTopic ? { responseTopic: p.responseTopic } : {}),
      ...(p?.correlationData ? { correlationData: Buffer.from(p.correlationData).toString('utf8') } : {}),
    });
  });
  await new Promise<void>((resolve, reject) => {
    recorder.once('connect', () => recorder.subscribe('#', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    recorder.once('error', reject);
  });
  doc = (await f.http('GET', '/asyncapi.json', { key: null })).body;
}, 60_000);
afterAll(async () => {
  await recorder?.endAsync();
  await f?.stop();
});

describe('GET /asyncapi.json on a running gateway', () => {
  it('is open, valid for @asyncapi/parser, names this broker and instance, and stays out of the OpenAPI document', async () => {
    const res = await f.http('GET', '/asyncapi.json', { key: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await asyncApiErrors(res.body)).toEqual([]);
    expect(res.body.servers.broker).toMatchObject({ host: new URL(f.broker.url).host, protocol: 'mqtt', protocolVersion: '5' });
    expect(res.body.channels[RESPONSE_CHANNEL_ID].parameters.instanceId.enum).toEqual(['test']);
    const openapi = (await f.http('GET', '/openapi.json', { key: null })).body;
    expect(Object.keys(openapi.paths)).not.toContain('/asyncapi.json');
  }, 60_000);
});

describe('real payloads on the wire, checked against the served document', () => {
  const started = Date.now();

  it('the gateway switches meters of each MQTT profile: every kind of message goes over the broker', async () => {
    // acme: disconnect, reconnect, a limit set and removed; each verified by a read-back.
    await ordered(await command('AW-A1', 'disconnect'));
    await ordered(await command('AW-A1', 'reconnect'));
    await ordered(await limit('AW-A1', 1500));
    await ordered(await limit('AW-A1', null));
    // A refusal: the meter nacks, the gateway retries.
    f.fleet.meter('AW-NACK').nackCommands(1);
    const nacked = await ordered(await command('AW-NACK', 'disconnect'));
    expect(nacked.attempts.map((a: any) => a.outcome)).toContain('nack');
    // An expired command: the meter's clock is past its `exp` when it arrives; then the clock is right again.
    meterAheadMs = 60_000;
    const late = await command('AW-EXP', 'disconnect');
    expect(late.status, JSON.stringify(late.body)).toBe(202);
    await waitFor('a command to arrive expired', () => f.fleet.meter('AW-EXP').received.some((c) => c.fate === 'expired'));
    meterAheadMs = 0;
    expect((await f.waitForOrder(late.body.id)).state).toBe('done');
    // volta: a remote reconnect arms; the customer presses the button: a status report. Then a remote disconnect.
    await ordered(await command('AW-V1', 'reconnect'), ['armed']);
    expect(f.fleet.meter('AW-V1').pressButton()).toBe(true);
    await waitFor('the status report of the button press', () => statuses().length > 0);
    await ordered(await command('AW-V1', 'disconnect'));
    await new Promise((r) => setTimeout(r, 300)); // the last read-back's reply reaches the recorder

    const ops = commands().map((r) => json(r).op);
    for (const op of ['disconnect', 'reconnect', 'read', 'limit']) expect(ops, op).toContain(op);
    const results = replies().map((r) => json(r).result);
    expect(results).toContain('ok');
    expect(results).toContain('nack');
    expect(replies().some((r) => r.topic.startsWith('meterline/test/reply/'))).toBe(true); // the Response Topic
    expect(replies().some((r) => r.topic.startsWith('volta/pp20/'))).toBe(true); // a fixed reply topic
    expect(statuses()).toHaveLength(1);
  }, 90_000);

  it('every message is on a channel of the document and its payload valid for the message schema: 0 violations', () => {
    // Strict, but a `required` inside if/then (limitW for the limit op) names a property defined beside it, not under it.
    const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
    const validators = new Map<string, ValidateFunction>();
    const violations: string[] = [];
    const channelsSeen = new Set<string>();
    expect(wire.length).toBeGreaterThan(20);
    for (const r of wire) {
      const channel = channelOf(r);
      if (!channel) {
        violations.push(`${r.topic}: on no channel of the document`);
        continue;
      }
      channelsSeen.add(channel.id);
      const ref = channel.messageRef;
      let validate = validators.get(ref);
      if (!validate) {
        const message = doc.components.messages[ref.replace('#/components/messages/', '')];
        validate = ajv.compile(message.payload);
        validators.set(ref, validate);
      }
      let payload: unknown;
      try {
        payload = JSON.parse(r.text);
      } catch {
        violations.push(`${r.topic}: not JSON: ${r.text}`);
        continue;
      }
      if (!validate(payload)) violations.push(`${r.topic} (${ref}): ${ajv.errorsText(validate.errors)} in ${r.text}`);
      if (r.retain) violations.push(`${r.topic}: retained`);
      if (r.qos !== 1) violations.push(`${r.topic}: QoS ${r.qos}`);
    }
    expect(violations).toEqual([]);
    // Every channel this traffic can use was checked: acme answers on the Response Topic (MQTT 5), volta on its own.
    expect([...channelsSeen].sort()).toEqual(['acme-em340-fw2_4-command', 'gateway-response-topic', 'volta-pp20-fw1_7-command', 'volta-pp20-fw1_7-reply', 'volta-pp20-fw1_7-status']);
    // And the schemas refuse what the contract does not allow: another firmware's relay word, a limiter reply without its limit.
    const acmeReply = validators.get(`#/components/messages/${ACME}.reply`)!;
    expect(acmeReply({ cid: 'c', result: 'ok', relay: 'ON', loadLimitW: null })).toBe(false);
    expect(acmeReply({ cid: 'c', result: 'ok', relay: 'connected' })).toBe(false);
    expect(acmeReply({ cid: 'c', result: 'ok', relay: 'connected', loadLimitW: null })).toBe(true);
  });

  it('an expired command is dropped without a reply; every other command is answered on its cid', () => {
    const expired = f.fleet.meter('AW-EXP').received.filter((c) => c.fate === 'expired').map((c) => c.cid);
    expect(expired.length).toBeGreaterThan(0);
    const answered = new Set(replies().map((r) => json(r).cid));
    for (const cid of expired) expect(answered.has(cid), cid).toBe(false);
    const unanswered = commands().map((r) => json(r).cid).filter((cid) => !answered.has(cid));
    expect(unanswered.sort()).toEqual([...expired].sort());
  });

  it('ts and exp are epoch milliseconds: exp is ts plus the profile timeout (600 ms in the test profiles)', () => {
    for (const r of commands()) {
      const c = json(r);
      expect(c.ts).toBeGreaterThanOrEqual(started - 1000);
      expect(c.ts).toBeLessThanOrEqual(Date.now());
      expect(c.exp - c.ts).toBe(600);
    }
  });

  it('voltageV is on the supply side: it stays with the relay open, while the load side reads 0', () => {
    const open = replies().map(json).filter((p) => p.relay === 'disconnected' || p.relay === 'OFF');
    expect(open.length).toBeGreaterThan(0);
    for (const p of open) {
      expect(p.voltageV).toBeGreaterThan(200);
      expect(p.loadSideVoltageV).toBe(0);
    }
  });

  it('no status report follows a remote switch: the one report is the button press, and the order is proved by its read-back', async () => {
    const [report] = statuses();
    expect(report!.topic).toBe('volta/pp20/AW-V1/state');
    expect(json(report!).relay).toBe('ON');
    for (const meterId of ['AW-A1', 'AW-NACK', 'AW-EXP']) expect(statuses().filter((r) => r.topic.includes(`/${meterId}/`))).toEqual([]);
  });

  it('Response Topic firmware is asked with the gateway instance topic and the cid as Correlation Data, and echoes it', () => {
    const acme = commands().filter((r) => r.topic.startsWith('meters/'));
    expect(acme.length).toBeGreaterThan(0);
    for (const r of acme) {
      const meterId = r.topic.split('/')[1];
      expect(r.responseTopic).toBe(`meterline/test/reply/${meterId}`);
      expect(r.correlationData).toBe(json(r).cid);
    }
    for (const r of replies().filter((x) => x.topic.startsWith('meterline/'))) expect(r.correlationData).toBe(json(r).cid);
    for (const r of commands().filter((x) => x.topic.startsWith('volta/'))) expect(r.responseTopic).toBeUndefined();
  });
});
