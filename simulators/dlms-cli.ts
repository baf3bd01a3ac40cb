import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { CONTROL_MODES, remoteReconnectOutcome, type ControlMode } from '../drivers/dlms/cosem/disconnect-control.js';
import { DLMS_WRAPPER_PORT } from '../drivers/dlms/wrapper-frame.js';
import { RELAY_STATES, type RelayState } from '../src/domain/relay.js';
import { parseKeyFile } from '../src/keys/key-file.js';
import type { SimMeterKeys } from './dlms-meter.js';
import { DlmsBusSimulator, type BusMeterSpec } from './dlms-bus.js';
import { DlmsTcpServer } from './dlms-tcp-server.js';

/**
 * `simulator dlms`: N simulated DLMS/COSEM meters on their own, on a serial port (HDLC on RS-485 or a pty)
 * or on a TCP port (the IEC 62056-47 wrapper, meters by wPort, or HDLC over TCP as a terminal server gives
 * it), with push on relay change. Prints each meter with the address to register it under in the gateway.
 *
 * With `--hls` the meters use HLS-GMAC (mechanism 5) and security suite 0 with random per-meter keys (GUEK, GAK,
 * KEK from node:crypto) and system titles, written to a key file in the gateway's import format (CSV, mode 0600:
 * `meterline keys import <file>`), or read back from one (`--keys-in`) so a restart keeps the keys. Keys are never
 * printed: stdout names each meter, its address and its system title only. The meter answers in whichever ciphering
 * policy the gateway's profile uses; `--ciphering` and `--dedicated-key` say which profile to register it with.
 */

/** The key file's header, as `meterline keys import` reads it (src/keys/key-file.ts). */
export const SIM_KEY_FILE_HEADER = 'meter id,system title,GUEK,GAK,KEK';
/** The simulated meters' system titles: a 3-letter manufacturer id (Green Book 4.3.4), then 5 random bytes. */
const SYSTEM_TITLE_MAKER = Buffer.from('MTL', 'latin1');
const CIPHERINGS = ['authenticated-encrypted', 'authenticated', 'encrypted'] as const;

export const DLMS_USAGE = `Usage: node dist/simulators/cli.js dlms (--serial <device> | --tcp <port>) [options]

Simulated DLMS/COSEM meters (see "DLMS/COSEM meters" in README.md).

Where:
  --serial <device>       the simulator's end of a serial line (RS-485 adapter, or one side of a pty pair)
  --baud <n>              serial speed                                  (default 9600)
  --tcp <port>            listen on this TCP port (4059 is the DLMS port)
  --host <addr>           TCP listen address                            (default 127.0.0.1)
  --hdlc                  on --tcp: HDLC over TCP (a terminal server) instead of the wrapper

Meters:
  --meters <n>            number of meters                              (default 4)
  --prefix <text>         meter id prefix; ids are <prefix>000001…      (default DLMS-)
  --first-address <n>     first meter's address; the rest follow        (default 17)
  --control-mode <m>      disconnect control mode 0..6, or "mixed" (2, 1 alternating) (default mixed)
  --password <text>       LLS password every meter requires (default: none, lowest security)
  --hls                   HLS-GMAC (suite 0) with random per-meter keys and system titles; needs --keys-out or --keys-in
  --ciphering <policy>    with --hls: the profile's ciphering, authenticated-encrypted|authenticated|encrypted
                          (default authenticated-encrypted; the meter answers in the policy the gateway uses)
  --dedicated-key         with --hls: the profile uses a dedicated key (needs encryption in --ciphering)
  --keys-out <file>       with --hls: write the meters' keys there (CSV, mode 0600) for "meterline keys import <file>";
                          an existing file is not overwritten
  --keys-in <file>        with --hls: take the meters' keys from this key file (one row per meter), e.g. the one an
                          earlier run wrote, so the gateway's imported keys still fit after a restart
  --initial <state>       initial relay: connected|disconnected|armed   (default connected)
  --auto-press-ms <ms>    an armed relay is closed by the "customer" this long after arming
  --push <host:port>      push a Data-Notification there when a meter's relay moves on its own
  --log-level <level>     pino log level                                (default info)
  -h, --help              print this help
`;

function fail(message: string): never {
  process.stderr.write(`error: ${message}\nRun "cli.js dlms --help" for usage.\n`);
  process.exit(2);
}

function int(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer ${min}..${max}, got "${value}"`);
  return n;
}

export async function runDlmsSimulator(args: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        serial: { type: 'string' },
        baud: { type: 'string' },
        tcp: { type: 'string' },
        host: { type: 'string' },
        hdlc: { type: 'boolean' },
        meters: { type: 'string' },
        prefix: { type: 'string' },
        'first-address': { type: 'string' },
        'control-mode': { type: 'string' },
        password: { type: 'string' },
        hls: { type: 'boolean' },
        ciphering: { type: 'string' },
        'dedicated-key': { type: 'boolean' },
        'keys-out': { type: 'string' },
        'keys-in': { type: 'string' },
        initial: { type: 'string' },
        'auto-press-ms': { type: 'string' },
        push: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(DLMS_USAGE);
    return;
  }
  if ((values.serial === undefined) === (values.tcp === undefined)) fail('give exactly one of --serial <device> or --tcp <port>');
  if (values.hdlc && values.tcp === undefined) fail('--hdlc goes with --tcp (a serial line is HDLC already)');
  const count = int('meters', values.meters, 4, 1, 10_000);
  const first = int('first-address', values['first-address'], 17, 1, 0x3fff);
  if (first + count - 1 > 0x3fff) fail(`--first-address ${first} with --meters ${count} runs past the largest address 16383`);
  const modeArg = values['control-mode'] ?? 'mixed';
  const modeOf = (i: number): ControlMode => {
    if (modeArg === 'mixed') return i % 2 === 0 ? 2 : 1;
    return Number(modeArg) as ControlMode;
  };
  if (modeArg !== 'mixed' && !CONTROL_MODES.includes(Number(modeArg) as ControlMode)) fail(`--control-mode must be 0..6 or "mixed", got "${modeArg}"`);
  const initial = (values.initial ?? 'connected') as RelayState;
  if (!RELAY_STATES.includes(initial)) fail(`--initial must be one of ${RELAY_STATES.join('|')}, got "${values.initial}"`);
  const autoPressMs = values['auto-press-ms'] === undefined ? undefined : int('auto-press-ms', values['auto-press-ms'], 0, 0, 86_400_000);
  let push: { host: string; port: number } | undefined;
  if (values.push !== undefined) {
    const m = /^(.+):(\d{1,5})$/.exec(values.push);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65_535) fail(`--push must be host:port, got "${values.push}"`);
    push = { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  }
  const prefix = values.prefix ?? 'DLMS-';
  const ids = Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(6, '0')}`);
  const hls = values.hls ? hlsSetup(values, ids) : undefined;
  if (!values.hls) {
    for (const o of ['ciphering', 'dedicated-key', 'keys-out', 'keys-in'] as const) if (values[o] !== undefined) fail(`--${o} goes with --hls`);
  }
  const tcpMode = values.tcp === undefined ? undefined : values.hdlc ? 'hdlc' : 'wrapper';

  const meters: BusMeterSpec[] = [];
  for (let i = 0; i < count; i++) {
    const address = first + i;
    meters.push({
      meterId: ids[i]!,
      physicalAddress: address,
      // On the wrapper a meter is its wPort (logical device); on HDLC the management logical device 1.
      logicalAddress: tcpMode === 'wrapper' ? address : 1,
      controlMode: modeOf(i),
      initialRelay: initial,
      ...(values.password !== undefined ? { password: values.password } : {}),
      ...(hls ? { keys: hls.keys.get(ids[i]!)! } : {}),
      ...(autoPressMs !== undefined ? { faults: { autoPressAfterMs: autoPressMs } } : {}),
    });
  }

  const log = pino({ level: values['log-level'] ?? 'info', base: { component: 'dlms-simulator' } });
  let stop: () => Promise<void>;
  let where: string;
  if (values.serial !== undefined) {
    if (push) fail('--push needs a TCP network; a serial meter cannot push (use --tcp)');
    const bus = new DlmsBusSimulator({ path: values.serial, baudRate: int('baud', values.baud, 9600, 300, 921_600), meters, logger: log });
    await bus.start();
    if (!bus.ready) log.warn({ path: values.serial }, 'serial device not open yet; retrying');
    stop = () => bus.stop();
    where = `serial ${values.serial}`;
  } else {
    const port = int('tcp', values.tcp, DLMS_WRAPPER_PORT, 0, 65_535);
    const server = new DlmsTcpServer({ mode: tcpMode!, port, host: values.host ?? '127.0.0.1', meters, logger: log, ...(push ? { push } : {}) });
    await server.start();
    stop = () => server.stop();
    where = `TCP ${values.host ?? '127.0.0.1'}:${server.port} (${tcpMode === 'hdlc' ? 'HDLC over TCP' : 'wrapper'})`;
  }

  const lines = meters.map((m) => {
    const address = tcpMode === 'wrapper' ? `${m.logicalAddress}` : `${m.physicalAddress}`;
    const reconnect = remoteReconnectOutcome(m.controlMode) === 'armed' ? 'reconnect arms' : m.controlMode === 0 ? 'not operable' : 'reconnect closes';
    return `  ${m.meterId}  address "${address}"  control mode ${m.controlMode} (${reconnect})${m.keys ? `  system title ${m.keys.systemTitle.toString('hex').toUpperCase()}` : ''}`;
  });
  const security = hls ? `HLS-GMAC, suite 0 ${hls.ciphering}${hls.dedicatedKey ? ' with a dedicated key' : ''}` : values.password !== undefined ? 'LLS password required' : 'lowest security';
  process.stdout.write(
    [
      `DLMS simulator on ${where}: ${count} meter(s), ${security}${push ? `, pushing to ${push.host}:${push.port}` : ''}`,
      ...(hls
        ? [
            `Keys: ${hls.source}; import them with "meterline keys import ${hls.file}".`,
            `Use a DLMS profile with "security": "hls-gmac", "ciphering": "${hls.ciphering}", "dedicatedKey": ${hls.dedicatedKey}, "keys": ["GUEK", "GAK", "KEK"] or a subset with GUEK and GAK${hls.ciphering === 'authenticated-encrypted' ? ` (shipped: ${hls.dedicatedKey ? 'dsmr5-hls-gmac-mode1' : 'idis-hls-gmac-mode6'})` : ''}.`,
          ]
        : []),
      `Register each meter on a link that points here, with this address:`,
      ...lines,
      '',
    ].join('\n'),
  );

  // Also what keeps the process alive while a serial device is missing (the line's retry timer is unref'd).
  const statsTimer = setInterval(() => log.info({ meters: meters.map((m) => m.meterId).slice(0, 3), count }, 'running'), 60_000);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    clearInterval(statsTimer);
    await stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

interface HlsSetup {
  keys: Map<string, SimMeterKeys>;
  ciphering: (typeof CIPHERINGS)[number];
  dedicatedKey: boolean;
  /** The key file the gateway imports. */
  file: string;
  /** Where the keys came from, for the banner (never the keys). */
  source: string;
}

/** The meters' HLS keys: read from --keys-in, or generated and written to --keys-out (mode 0600, never overwritten). */
function hlsSetup(values: { password?: string | undefined; ciphering?: string | undefined; 'dedicated-key'?: boolean | undefined; 'keys-out'?: string | undefined; 'keys-in'?: string | undefined }, ids: readonly string[]): HlsSetup {
  if (values.password !== undefined) fail('--hls authenticates with keys, not a password: give --hls or --password, not both');
  const ciphering = (values.ciphering ?? 'authenticated-encrypted') as HlsSetup['ciphering'];
  if (!CIPHERINGS.includes(ciphering)) fail(`--ciphering must be one of ${CIPHERINGS.join('|')}, got "${values.ciphering}"`);
  const dedicatedKey = values['dedicated-key'] === true;
  if (dedicatedKey && ciphering === 'authenticated') fail('--dedicated-key needs encryption: --ciphering authenticated-encrypted or encrypted');
  const keysIn = values['keys-in'];
  const keysOut = values['keys-out'];
  if (keysIn === undefined && keysOut === undefined) fail('--hls needs --keys-out <file> (new keys are written there for the gateway to import) or --keys-in <file> (keys an earlier run wrote)');
  if (keysIn !== undefined && keysOut !== undefined) fail('give --keys-in <file> (reuse keys) or --keys-out <file> (new keys), not both');
  const keys = new Map<string, SimMeterKeys>();
  if (keysIn !== undefined) {
    let text: string;
    try {
      text = readFileSync(keysIn, 'utf8');
    } catch (e) {
      fail(`--keys-in ${keysIn}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    let rows;
    try {
      rows = parseKeyFile(text, keysIn.toLowerCase().endsWith('.json') ? 'json' : 'csv');
    } catch (e) {
      // The message names a row and field, never a value.
      fail(`--keys-in ${keysIn}: ${(e as Error).message}`);
    }
    const byId = new Map(rows.map((r) => [r.meterId, r.keys]));
    const missing = ids.filter((id) => !byId.has(id));
    if (missing.length > 0) fail(`--keys-in ${keysIn} has no row for meter ${missing[0]}${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}: give the --meters, --prefix of the run that wrote it`);
    for (const id of ids) {
      const k = byId.get(id)!;
      keys.set(id, { encryptionKey: k.encryptionKey, authenticationKey: k.authenticationKey, systemTitle: k.serverSystemTitle!, ...(k.masterKey ? { masterKey: k.masterKey } : {}) });
    }
    return { keys, ciphering, dedicatedKey, file: keysIn, source: `${ids.length} meter(s) from ${keysIn}` };
  }
  const file = keysOut!;
  if (existsSync(file)) fail(`--keys-out ${file} exists: reuse its keys with --keys-in ${file}, or remove it for new keys (the gateway may hold the old ones)`);
  const titles = new Set<string>();
  for (const id of ids) {
    let systemTitle: Buffer;
    do systemTitle = Buffer.concat([SYSTEM_TITLE_MAKER, randomBytes(5)]);
    while (titles.has(systemTitle.toString('hex')));
    titles.add(systemTitle.toString('hex'));
    keys.set(id, { encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), masterKey: randomBytes(16), systemTitle });
  }
  const csv = [SIM_KEY_FILE_HEADER, ...ids.map((id) => {
    const k = keys.get(id)!;
    return [id, k.systemTitle.toString('hex').toUpperCase(), k.encryptionKey.toString('hex'), k.authenticationKey.toString('hex'), k.masterKey!.toString('hex')].join(',');
  })].join('\n') + '\n';
  try {
    // 'wx': never follow an existing file (or a link planted in its place); 0600: the keys are secrets.
    writeFileSync(file, csv, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    fail(`--keys-out ${file}: cannot write it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return { keys, ciphering, dedicatedKey, file, source: `${ids.length} meter(s) with new random keys written to ${file} (mode 0600)` };
}
