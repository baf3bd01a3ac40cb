import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { BusMeterSpec } from '../../simulators/dlms-bus.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';

/**
 * Simulated HLS-GMAC meters (security suite 0, control mode 6 as the shipped `idis-hls-gmac-mode6` profile) behind
 * DLMS TCP wrapper servers in the test process: `links` servers (each one gateway link, a data concentrator), the
 * meters spread over them, each meter its own logical device (wPort), random keys per meter. `keyFileCsv()` is the
 * manufacturer's key file for them, as POST /v1/meter-keys/import takes it. Used by the kill -9 test and the DLMS bench.
 */

export const HLS_PROFILE = 'idis-hls-gmac-mode6';
/** wPorts from here on (1 is the management logical device of a single meter; keep clear of the reserved ones). */
const FIRST_WPORT = 100;

export interface CipheredMeter {
  meterId: string;
  link: string;
  wPort: number;
  keys: SimMeterKeys;
}

export interface CipheredFleet {
  meters: CipheredMeter[];
  /** One simulator per link, by link name. */
  servers: Map<string, DlmsTcpServer>;
  server(meterId: string): DlmsTcpServer;
  /** The gateway's `dlms.tcp` section for these links. */
  tcpLinks(o: { maxConnections: number }): Record<string, { kind: 'wrapper'; host: string; port: number; maxConnections: number; connectTimeoutMs: number; reconnectMs: number }>;
  keyFileCsv(): string;
  stop(): Promise<void>;
}

export async function startCipheredFleet(o: { count: number; links: number; prefix: string; maxConnections: number; initialRelay?: 'connected' | 'disconnected' }): Promise<CipheredFleet> {
  const meters: CipheredMeter[] = [];
  for (let i = 0; i < o.count; i++) {
    meters.push({
      meterId: `${o.prefix}${String(i + 1).padStart(4, '0')}`,
      link: `dc-${(i % o.links) + 1}`,
      wPort: FIRST_WPORT + i,
      keys: { encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), systemTitle: Buffer.concat([Buffer.from('SIM', 'latin1'), randomBytes(5)]) },
    });
  }
  const servers = new Map<string, DlmsTcpServer>();
  const byMeter = new Map<string, DlmsTcpServer>();
  for (let l = 1; l <= o.links; l++) {
    const link = `dc-${l}`;
    const mine = meters.filter((m) => m.link === link);
    const specs: BusMeterSpec[] = mine.map((m) => ({ meterId: m.meterId, physicalAddress: m.wPort, logicalAddress: m.wPort, controlMode: 6, keys: m.keys, initialRelay: o.initialRelay ?? 'connected' }));
    const server = new DlmsTcpServer({ mode: 'wrapper', port: 0, logger: pino({ level: 'silent' }), maxConnections: o.maxConnections, meters: specs });
    await server.start();
    servers.set(link, server);
    for (const m of mine) byMeter.set(m.meterId, server);
  }
  return {
    meters,
    servers,
    server: (meterId) => byMeter.get(meterId)!,
    tcpLinks: ({ maxConnections }) =>
      Object.fromEntries([...servers].map(([link, s]) => [link, { kind: 'wrapper' as const, host: '127.0.0.1', port: s.port, maxConnections, connectTimeoutMs: 2000, reconnectMs: 100 }])),
    keyFileCsv: () =>
      'meter id,system title,GUEK,GAK\n' +
      meters.map((m) => `${m.meterId},${m.keys.systemTitle.toString('hex')},${m.keys.encryptionKey.toString('hex')},${m.keys.authenticationKey.toString('hex')}`).join('\n') +
      '\n',
    async stop() {
      for (const s of servers.values()) await s.stop();
    },
  };
}
