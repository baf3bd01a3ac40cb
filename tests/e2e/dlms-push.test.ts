import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlState } from '../../drivers/dlms/cosem/disconnect-control.js';
import { disconnectPushBody, encodeDataNotification } from '../../drivers/dlms/push-notification.js';
import { encodeGeneralCiphering } from '../../drivers/dlms/security/ciphered-apdu.js';
import { protect } from '../../drivers/dlms/security/suite0-cipher.js';
import { encodeWrapperFrame } from '../../drivers/dlms/wrapper-frame.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { freePort } from '../harness/mosquitto.js';

/**
 * Issue 15 item 6, through the gateway as an operator runs it: a `dlms.push` listener and a `dlms.tcp` wrapper link
 * to a concentrator (the TCP simulator) whose meters push to the gateway. The HLS meter's keys are imported through
 * the API; it pushes general-glo-ciphering under its system title. A button press on it shows in the meter's
 * observed state and timeline with source `push` within a second. A keyless meter's plain push is taken from its
 * place on the link. An unknown system title, a bad tag and a replayed notification are dropped and counted in
 * `meterline_dlms_push_total{outcome}`.
 */

const HLS = { meterId: 'PUSH-HLS-41', wPort: 41, systemTitle: Buffer.from('4D4D4D0000BC6141', 'hex'), ek: randomBytes(16), ak: randomBytes(16) };
const PLAIN = { meterId: 'PUSH-LLS-42', wPort: 42 };

let sim: DlmsTcpServer;
let f: GatewayFixture;
let pushPort: number;
let n = 0;
const k = () => ({ 'idempotency-key': `dlms-push-${++n}` });

beforeAll(async () => {
  pushPort = await freePort();
  sim = new DlmsTcpServer({
    mode: 'wrapper',
    port: 0,
    logger: pino({ level: 'silent' }),
    push: { host: '127.0.0.1', port: pushPort },
    meters: [
      { meterId: HLS.meterId, physicalAddress: HLS.wPort, logicalAddress: HLS.wPort, controlMode: 6, keys: { encryptionKey: HLS.ek, authenticationKey: HLS.ak, systemTitle: HLS.systemTitle }, initialRelay: 'armed' },
      { meterId: PLAIN.meterId, physicalAddress: PLAIN.wPort, logicalAddress: PLAIN.wPort, controlMode: 2, password: 'lgz-secret-2', initialRelay: 'connected' },
    ],
  });
  await sim.start();
  f = await startGatewayFixture(
    [{ meterId: 'MQTT-NEIGHBOUR', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }],
    {
      dlms: {
        ports: {},
        tcp: { 'dc-push': { kind: 'wrapper', host: '127.0.0.1', port: sim.port, maxConnections: 2, connectTimeoutMs: 1000, reconnectMs: 100 } },
        push: { port: pushPort, host: '127.0.0.1', maxConnections: 100, maxFrameBytes: 2048, idleTimeoutMs: 10_000 },
        passwords: { 'kam-omnipower-dlms-mode1': { value: 'kam-secret-1' }, 'lgz-e570-dlms-mode2': { value: 'lgz-secret-2' } },
      },
    },
    { env: { METERLINE_KEY_MASTER: randomBytes(32).toString('hex') } },
  );
  for (const [meterId, profileId, address] of [
    [HLS.meterId, 'idis-hls-gmac-mode6', String(HLS.wPort)],
    [PLAIN.meterId, 'lgz-e570-dlms-mode2', String(PLAIN.wPort)],
  ] as const) {
    const res = await f.http('PUT', `/v1/meters/${meterId}`, { body: { profileId, link: 'dc-push', region: 'north', address } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
  const csv = `meter id,system title,GUEK,GAK\n${HLS.meterId},${HLS.systemTitle.toString('hex')},${HLS.ek.toString('hex')},${HLS.ak.toString('hex')}\n`;
  const imported = await f.http('POST', '/v1/meter-keys/import', { key: f.adminKey, headers: k(), body: { format: 'csv', content: csv } });
  expect(imported.status, JSON.stringify(imported.body)).toBe(200);
  expect(imported.body).toMatchObject({ imported: 1, created: 1 });
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await sim?.stop();
});

/** What a meter sends to the push port: one wrapper frame from its logical device to the push client (wPort 1). */
async function pushRaw(apdu: Uint8Array, wPort: number): Promise<void> {
  const s = new Socket();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.connect({ host: '127.0.0.1', port: pushPort }, () => s.end(encodeWrapperFrame({ source: wPort, destination: 1, apdu }), () => resolve()));
  });
}

/** A Data-Notification ciphered as the meter does it (suite 0, authenticated and encrypted, general-glo-ciphering). */
function cipheredPush(o: { systemTitle: Buffer; ek: Buffer; ak: Buffer; invocationCounter: number; deviceName: string; state: ControlState }): Uint8Array {
  const plain = encodeDataNotification({ longInvokeId: 7, body: disconnectPushBody(Buffer.from(o.deviceName, 'latin1'), o.state) });
  const content = protect({
    encryptionKey: o.ek,
    authenticationKey: o.ak,
    securityControl: { suite: 0, authenticated: true, encrypted: true, broadcastKey: false, compressed: false },
    systemTitle: o.systemTitle,
    invocationCounter: o.invocationCounter,
    plaintext: plain,
  });
  return encodeGeneralCiphering('global', o.systemTitle, content);
}

async function pushCounts(): Promise<Record<string, number>> {
  const text = (await (await fetch(`${f.gateway.apiUrl}/metrics`, { headers: { authorization: `Bearer ${f.operatorKey}` } })).text()) as string;
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^meterline_dlms_push_total\{outcome="([a-z_]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const observed = async (meterId: string): Promise<{ relay: string; source: string; at: string } | null> => (await f.http('GET', `/v1/meters/${meterId}`)).body.observed;

describe('DLMS push through the gateway', () => {
  it('a button press on the HLS meter (ciphered push) shows in its observed state and timeline with source push within a second', async () => {
    expect(await observed(HLS.meterId)).toBeNull();
    const pressed = Date.now();
    expect(sim.meter(HLS.meterId).pressButton()).toBe(true);
    const seen = await waitFor('observed connected by push', async () => {
      const o = await observed(HLS.meterId);
      return o?.source === 'push' && o.relay === 'connected' ? o : undefined;
    }, 2000);
    const elapsedMs = Date.now() - pressed;
    console.log(`DLMS push e2e: button press to observed state through the API in ${elapsedMs} ms`);
    expect(elapsedMs).toBeLessThanOrEqual(1000);
    expect(seen).toMatchObject({ relay: 'connected', source: 'push' });
    const timeline = (await f.http('GET', `/v1/meters/${HLS.meterId}/timeline`)).body.items as Array<{ kind: string; details: Record<string, unknown> }>;
    expect(timeline.filter((i) => i.kind === 'reading')).toEqual(expect.arrayContaining([expect.objectContaining({ details: expect.objectContaining({ relay: 'connected', source: 'push' }) })]));
    expect(await pushCounts()).toMatchObject({ delivered: 1 });
  });

  it('a keyless meter’s plain push is taken from its place on the concentrator link', async () => {
    expect(sim.meter(PLAIN.meterId).trip()).toBe(true);
    const o = await waitFor('observed disconnected by push', async () => {
      const x = await observed(PLAIN.meterId);
      return x?.source === 'push' ? x : undefined;
    }, 2000);
    expect(o.relay).toBe('disconnected');
    // The same plain notification from another wPort is not that meter's: dropped as unknown-meter.
    const before = await pushCounts();
    await pushRaw(encodeDataNotification({ longInvokeId: 1, body: disconnectPushBody(Buffer.from(PLAIN.meterId), ControlState.Connected) }), 77);
    // A plain push naming the HLS meter is refused: a meter with keys must cipher.
    await pushRaw(encodeDataNotification({ longInvokeId: 2, body: disconnectPushBody(Buffer.from(HLS.meterId), ControlState.Disconnected) }), HLS.wPort);
    await waitFor('two unknown-meter drops', async () => ((await pushCounts()).unknown_meter === (before.unknown_meter ?? 0) + 2 ? true : undefined), 2000);
    expect((await observed(PLAIN.meterId))!.relay).toBe('disconnected');
    expect((await observed(HLS.meterId))!.relay).toBe('connected');
  });

  it('an unknown system title, a bad tag and a replayed notification are dropped and counted; the observed state does not move', async () => {
    const before = await pushCounts();
    const good = { systemTitle: HLS.systemTitle, ek: HLS.ek, ak: HLS.ak, deviceName: HLS.meterId };
    // Unknown system title: keys that no key set names.
    await pushRaw(cipheredPush({ ...good, systemTitle: Buffer.from('4D4D4D00DEADBEEF', 'hex'), invocationCounter: 500, state: ControlState.Disconnected }), HLS.wPort);
    // Bad tag: the meter's system title, another authentication key.
    await pushRaw(cipheredPush({ ...good, ak: randomBytes(16), invocationCounter: 501, state: ControlState.Disconnected }), HLS.wPort);
    await waitFor('unknown system title and bad tag counted', async () => {
      const c = await pushCounts();
      return c.unknown_system_title === (before.unknown_system_title ?? 0) + 1 && c.bad_tag === (before.bad_tag ?? 0) + 1 ? c : undefined;
    }, 2000);
    expect((await observed(HLS.meterId))!.relay).toBe('connected');

    // A genuine notification is taken once; the same bytes again are a replay.
    const genuine = cipheredPush({ ...good, invocationCounter: 100_000, state: ControlState.ReadyForReconnection });
    await pushRaw(genuine, HLS.wPort);
    await waitFor('genuine push observed', async () => ((await observed(HLS.meterId))!.relay === 'armed' ? true : undefined), 2000);
    await pushRaw(genuine, HLS.wPort);
    const after = await waitFor('replay counted', async () => {
      const c = await pushCounts();
      return c.replayed === (before.replayed ?? 0) + 1 ? c : undefined;
    }, 2000);
    expect(after.delivered).toBe((before.delivered ?? 0) + 1);
    expect((await observed(HLS.meterId))!.relay).toBe('armed');
  });
});
