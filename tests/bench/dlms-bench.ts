/**
 * DLMS benches (issue 15): ciphered orders per second through the gateway over the TCP wrapper (IEC 62056-47), on one
 * link and on 100 links; the time an HLS-GMAC association takes (driver level, against the TCP simulator); and what
 * security suite 0 ciphering costs over a plain conversation (security 'lowest' against HLS-GMAC with
 * authenticated-and-encrypted APDUs, the same conversation: µs per conversation and per APDU).
 *
 * Through the gateway: the built gateway (`node dist/src/main.js`, SQLite, key master in its environment) in a child
 * process; 100 simulated HLS-GMAC meters (control mode 6, `idis-hls-gmac-mode6` with the relay operate time cut to
 * 20 ms, as the e2e tests) in this process behind DlmsTcpServer wrapper servers; keys imported by the API; then
 * ROUNDS waves of one order per meter (disconnect for safety, then reconnect: armed), each wave one bulk request,
 * the next sent when the wave's last order ended. Orders/s = all orders / time from the first request to the last
 * final state. Driver level: one meter, conversations one after another (readRelay: associate, GET control state,
 * release), the driver and the simulator in this process.
 *
 * Run: `npm run build && node dist/tests/bench/dlms-bench.js` (also part of `npm run bench`).
 * DLMS_BENCH_ROUNDS (default 10) and DLMS_BENCH_CONVERSATIONS (default 500) change the sizes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createDlmsDriver } from '../../drivers/dlms/index.js';
import { securityControlFor } from '../../drivers/dlms/security/security-control.js';
import { protect, unprotect } from '../../drivers/dlms/security/suite0-cipher.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import type { DlmsSimMeter, SimMeterKeys } from '../../simulators/dlms-meter.js';
import { newApiKey, sha256Hex } from '../../src/api/auth.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { projectRoot } from '../../src/config/project-root.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { MemoryKeyring } from '../drivers/dlms/memory-keyring.js';
import { startCipheredFleet, HLS_PROFILE } from '../harness/dlms-ciphered-fleet.js';
import { FINAL_STATES, GatewayProcess, waitHealthy } from '../harness/fault-run.js';
import { freePort, startMosquitto } from '../harness/mosquitto.js';
import { writeFastProfiles } from '../harness/test-profiles.js';
import { fmt, isMain, pct } from './bench-common.js';

const METERS = 100;
const ROUNDS = Number(process.env.DLMS_BENCH_ROUNDS ?? 10);
const CONVERSATIONS = Number(process.env.DLMS_BENCH_CONVERSATIONS ?? 500);
const quiet = pino({ level: 'silent' });

/** The shipped profiles with the relay operate time cut to 20 ms; timeouts and retries as shipped. */
function writeDlmsBenchProfiles(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ml-dlms-bench-profiles-'));
  for (const p of loadFirmwareProfiles(join(projectRoot(), 'firmware-profiles')).values()) writeFileSync(join(dir, `${p.id}.json`), JSON.stringify({ ...p, relay: { ...p.relay, operateTimeMs: 20 } }, null, 2));
  return dir;
}

interface GatewayRun {
  what: string;
  orders: number;
  seconds: number;
  ordersPerSecond: number;
  states: Record<string, number>;
  maxOpenConnections: number;
}

/** Ciphered orders through the gateway: `links` wrapper links, the 100 meters spread over them. */
async function throughGateway(links: number, maxConnections: number, linkConcurrency: number): Promise<GatewayRun> {
  const broker = await startMosquitto();
  const fleet = await startCipheredFleet({ count: METERS, links, prefix: `B${links}-`, maxConnections: Math.max(maxConnections, 4) });
  const profilesDir = writeDlmsBenchProfiles();
  const dir = mkdtempSync(join(tmpdir(), 'ml-dlms-bench-'));
  const port = await freePort();
  const operatorKey = newApiKey('op');
  const adminKey = newApiKey('adm');
  const allDay = ['00:00-24:00'];
  const configFile = join(dir, 'gateway.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      instanceId: `dlms-bench-${links}`,
      api: { host: '127.0.0.1', port, rateLimit: { max: 100_000, timeWindowMs: 1000 } },
      store: { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db') }, postgres: null },
      mqtt: { mode: 'external', url: broker.url },
      profilesDir,
      dlms: { tcp: fleet.tcpLinks({ maxConnections }), passwords: { 'kam-omnipower-dlms-mode1': { value: 'unused-1' }, 'lgz-e570-dlms-mode2': { value: 'unused-2' } } },
      control: { tickMs: 50, linkConcurrency },
      policy: { windows: { weekly: { mon: allDay, tue: allDay, wed: allDay, thu: allDay, fri: allDay, sat: allDay, sun: allDay }, holidayEveCutoff: null } },
      auth: {
        keys: [
          { name: 'bench-op', role: 'operator', sha256: sha256Hex(operatorKey) },
          { name: 'bench-admin', role: 'admin', sha256: sha256Hex(adminKey) },
        ],
        demoKeys: false,
      },
      fleet: { seed: null },
      simulator: { inProcess: false },
      demo: { reconnectEveryMs: 0 },
      audit: { keyFile: join(dir, 'audit.key'), anchorFile: join(dir, 'audit-anchors.jsonl') },
      log: { level: 'warn' },
    }),
  );
  process.env.METERLINE_KEY_MASTER = randomBytes(32).toString('hex');
  const gateway = new GatewayProcess(configFile);
  const api = async (path: string, init: RequestInit & { key?: string } = {}): Promise<any> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${init.key ?? operatorKey}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
    });
    const body = await res.json();
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
    return body;
  };
  const finals = (s: Record<string, number>) => FINAL_STATES.reduce((n, k) => n + (s[k] ?? 0), 0) + (s.escalated ?? 0);
  try {
    gateway.start();
    await waitHealthy(port, 30_000, 'gateway', () => (gateway.running ? null : `gateway exited: ${gateway.stderr.slice(-2000)}`));
    for (const m of fleet.meters) await api(`/v1/meters/${m.meterId}`, { method: 'PUT', headers: { 'idempotency-key': `register-${m.meterId}` }, body: JSON.stringify({ profileId: HLS_PROFILE, link: m.link, region: 'north', address: String(m.wPort) }) });
    await api('/v1/meter-keys/import', { method: 'POST', key: adminKey, headers: { 'idempotency-key': 'bench-keys' }, body: JSON.stringify({ format: 'csv', content: fleet.keyFileCsv() }) });
    const t0 = performance.now();
    let states: Record<string, number> = {};
    for (let wave = 0; wave < ROUNDS; wave++) {
      const action = wave % 2 === 0 ? 'disconnect' : 'reconnect';
      const orders = fleet.meters.map((m) => (action === 'disconnect' ? { meterId: m.meterId, action, reason: 'safety', reference: `B-${wave}` } : { meterId: m.meterId, action, reason: 'payment' }));
      await api('/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': `bench-wave-${wave}` }, body: JSON.stringify({ orders }) });
      const until = Date.now() + 120_000;
      for (;;) {
        states = (await api('/v1/queue')).byState;
        if (finals(states) >= METERS * (wave + 1)) break;
        if (Date.now() > until) throw new Error(`wave ${wave} did not end: ${JSON.stringify(states)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    if ((states.failed ?? 0) > 0) {
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(join(dir, 'gw.db'), { readonly: true });
      const rows = db.prepare(`SELECT o.action, a.outcome, a.detail, COUNT(*) AS n FROM orders o JOIN attempts a ON a.order_id = o.id WHERE o.state = 'failed' GROUP BY 1, 2, 3 ORDER BY n DESC LIMIT 5`).all();
      db.close();
      console.log(`failed orders' attempts (${links} links):`, rows);
    }
    const orders = METERS * ROUNDS;
    const maxOpenConnections = Math.max(...[...fleet.servers.values()].map((s) => s.counters.maxOpenConnections));
    let rejected = 0;
    for (const m of fleet.meters) rejected += fleet.server(m.meterId).simMeter(m.meterId).counters.rejectedCounters;
    if (rejected > 0) throw new Error(`${rejected} invocation counters rejected by the meters`);
    return { what: links === 1 ? `1 wrapper link (100 meters by wPort, ${maxConnections} connections)` : `${links} wrapper links (1 meter each, ${maxConnections} connection each)`, orders, seconds, ordersPerSecond: orders / seconds, states, maxOpenConnections };
  } finally {
    await gateway.stop();
    await fleet.stop();
    await broker.stop();
  }
}

interface ConversationStats {
  security: string;
  conversations: number;
  apdusPerConversation: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  associationP50Us: number;
  associationP99Us: number;
}

/**
 * `CONVERSATIONS` readRelay conversations with one meter over one wrapper link, one after another. The association
 * time is measured where the meter sees it: from the AARQ arriving to the first service request arriving (for
 * HLS-GMAC after passes 3 and 4), so it holds both sides' work and two (HLS: four) socket crossings.
 */
async function conversations(profile: DlmsFirmwareProfile, keys: SimMeterKeys | undefined): Promise<ConversationStats> {
  const hls = profile.dlms.security === 'hls-gmac';
  const server = new DlmsTcpServer({ mode: 'wrapper', port: 0, logger: quiet, maxConnections: 4, meters: [{ meterId: 'DRV-1', physicalAddress: 101, logicalAddress: 101, controlMode: 6, initialRelay: 'connected', ...(keys ? { keys } : {}) }] });
  await server.start();
  const sim: DlmsSimMeter = server.simMeter('DRV-1');
  // Every APDU the meter answers, with when it arrived.
  let arrivals: number[] = [];
  const answer = sim.answer.bind(sim);
  sim.answer = (apdu, now, clientSap) => {
    arrivals.push(performance.now());
    return answer(apdu, now, clientSap);
  };
  const keyring = new MemoryKeyring();
  if (keys) keyring.set('DRV-1', { keySetId: 'drv-ks1', encryptionKey: keys.encryptionKey, authenticationKey: keys.authenticationKey });
  const driver = createDlmsDriver({ links: { tcp: { drv: { kind: 'wrapper', host: '127.0.0.1', port: server.port, maxConnections: 1, connectTimeoutMs: 2000, reconnectMs: 100 } } }, profiles: [profile], logger: quiet, keyring });
  await driver.start();
  const meter = { meterId: 'DRV-1', profile, link: 'drv', address: '101' };
  const times: number[] = [];
  const assoc: number[] = [];
  let apdus = 0;
  try {
    for (let i = 0; i < 20; i++) await driver.readRelay(meter, { correlationId: `w${i}:1:read`, orderId: `w${i}`, timeoutMs: 2000, attempt: 1 }); // warm-up
    for (let i = 0; i < CONVERSATIONS; i++) {
      arrivals = [];
      const t = performance.now();
      const r = await driver.readRelay(meter, { correlationId: `c${i}:1:read`, orderId: `c${i}`, timeoutMs: 2000, attempt: 1 });
      times.push((performance.now() - t) * 1000);
      if (r.outcome !== 'ok') throw new Error(`conversation ${i} (${profile.dlms.security}): ${r.outcome} ${'detail' in r ? r.detail : ''}`);
      apdus += arrivals.length;
      const firstService = hls ? 2 : 1;
      assoc.push((arrivals[firstService]! - arrivals[0]!) * 1000);
    }
  } finally {
    await driver.stop();
    await server.stop();
  }
  if (sim.counters.rejectedCounters > 0) throw new Error('the meter rejected invocation counters');
  times.sort((a, b) => a - b);
  assoc.sort((a, b) => a - b);
  return {
    security: hls ? `hls-gmac, ${profile.dlms.ciphering}` : 'lowest, no ciphering',
    conversations: CONVERSATIONS,
    apdusPerConversation: apdus / CONVERSATIONS,
    meanUs: times.reduce((s, x) => s + x, 0) / times.length,
    p50Us: pct(times, 50),
    p99Us: pct(times, 99),
    associationP50Us: pct(assoc, 50),
    associationP99Us: pct(assoc, 99),
  };
}

/** node:crypto alone: protect + unprotect of one small APDU (suite 0, authenticated-encrypted), µs each. */
function cipherMicro(): { protectUs: number; unprotectUs: number } {
  const keys = { encryptionKey: randomBytes(16), authenticationKey: randomBytes(16) };
  const systemTitle = randomBytes(8);
  const plaintext = Uint8Array.from([0xc0, 0x01, 0xc1, 0x00, 0x46, 0x00, 0x00, 0x60, 0x03, 0x0a, 0xff, 0x03, 0x00]); // GET control state
  const n = 20_000;
  const sc = securityControlFor('authenticated-encrypted')!;
  let t = performance.now();
  const contents = [];
  for (let i = 0; i < n; i++) contents.push(protect({ ...keys, securityControl: sc, systemTitle, invocationCounter: i + 1, plaintext }));
  const protectUs = ((performance.now() - t) * 1000) / n;
  t = performance.now();
  for (const c of contents) unprotect(c, systemTitle, keys);
  const unprotectUs = ((performance.now() - t) * 1000) / n;
  return { protectUs, unprotectUs };
}

export async function runDlmsBench(): Promise<void> {
  console.log(`DLMS bench: ${METERS} HLS-GMAC meters, ${ROUNDS} waves through the gateway; ${CONVERSATIONS} conversations per security level at driver level`);
  const { profiles } = writeFastProfiles();
  const idis = profiles.get(HLS_PROFILE) as DlmsFirmwareProfile;
  const plain: DlmsFirmwareProfile = { ...idis, id: 'bench-lowest', dlms: { ...idis.dlms, security: 'lowest', ciphering: 'none' } };
  const keys: SimMeterKeys = { encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), systemTitle: randomBytes(8) };

  const micro = cipherMicro();
  const low = await conversations(plain, undefined);
  const ae = await conversations(idis, keys);
  const one = await throughGateway(1, 16, 16);
  const hundred = await throughGateway(100, 1, 1);

  console.log('\nthrough the gateway (ciphered orders: HLS-GMAC, authenticated-encrypted, control mode 6)');
  console.log('| links | orders | wall time | orders/s | final states | most connections open on one link |');
  console.log('|---|---|---|---|---|---|');
  for (const r of [one, hundred]) {
    const states = Object.entries(r.states).filter(([, n]) => n > 0).map(([k, n]) => `${fmt(n)} ${k}`).join(', ');
    console.log(`| ${r.what} | ${fmt(r.orders)} | ${fmt(r.seconds, 1)} s | ${fmt(r.ordersPerSecond, 1)} | ${states} | ${r.maxOpenConnections} |`);
  }
  console.log('\ndriver level: readRelay conversations with one meter over one wrapper link (AARQ … GET control state … RLRQ)');
  console.log('| security | APDUs per conversation | conversation mean | p50 | p99 | association p50 | association p99 |');
  console.log('|---|---|---|---|---|---|---|');
  for (const s of [low, ae]) {
    console.log(`| ${s.security} | ${fmt(s.apdusPerConversation, 1)} | ${fmt(s.meanUs)} µs | ${fmt(s.p50Us)} µs | ${fmt(s.p99Us)} µs | ${fmt(s.associationP50Us)} µs | ${fmt(s.associationP99Us)} µs |`);
  }
  const extra = ae.meanUs - low.meanUs;
  console.log(`\nciphering cost (hls-gmac authenticated-encrypted over lowest): ${fmt(extra)} µs per conversation (mean), ${fmt(ae.p50Us - low.p50Us)} µs (p50); ${fmt(extra / ae.apdusPerConversation, 1)} µs per APDU of the ciphered conversation (${fmt(ae.apdusPerConversation, 1)} APDUs)`);
  console.log(`node:crypto alone (suite 0, a 13-byte GET): protect ${fmt(micro.protectUs, 1)} µs, unprotect ${fmt(micro.unprotectUs, 1)} µs per APDU`);
}

if (isMain(import.meta.url)) {
  runDlmsBench().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
