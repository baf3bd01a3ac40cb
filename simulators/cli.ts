#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { RELAY_STATES, type RelayState } from '../src/domain/relay.js';
import { planFleet } from './fleet-plan.js';
import { loadFirmwareProfiles } from '../src/config/load-profiles.js';
import { asMqttProfile } from '../src/domain/firmware-profile.js';
import { MqttFleet } from './mqtt-fleet.js';
import { runDlmsSimulator } from './dlms-cli.js';

/**
 * Runs a simulated MQTT meter fleet on its own, so the gateway can be demonstrated and load-tested
 * against thousands of meters without hardware. Meter ids, profiles and links come from `planFleet`,
 * the same layout the gateway seeds its fleet from. `cli.js dlms …` runs simulated DLMS meters instead
 * (dlms-cli.ts).
 */

const USAGE = `Usage: node dist/simulators/cli.js [options]
       node dist/simulators/cli.js dlms --help     (simulated DLMS/COSEM meters on a serial or TCP port)

Simulated MQTT smart-meter fleet (see the MQTT contract in README.md).

Options:
  --broker <url>          MQTT broker URL                          (default mqtt://127.0.0.1:1883)
  --meters <n>            number of meters                          (default 1000)
  --prefix <text>         meter id prefix; ids are <prefix>000001…  (default SIM-)
  --profiles <ids>        comma-separated firmware profile ids, assigned round-robin
                          (default: every profile in the profiles directory)
  --profiles-dir <dir>    firmware profile directory                (default firmware-profiles/)
  --links <n>             number of links (data concentrators)      (default 10)
  --initial <state>       initial relay: connected|disconnected|armed (default connected)
  --auto-press-ms <ms>    an armed relay is closed by the "customer" this long after arming
  --connections <n>       MQTT connections to spread traffic over   (default 4)
  --log-level <level>     pino log level                            (default info)
  -h, --help              print this help
`;

function fail(message: string): never {
  process.stderr.write(`error: ${message}\nRun with --help for usage.\n`);
  process.exit(2);
}

function int(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}, got "${value}"`);
  return n;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'dlms') return runDlmsSimulator(process.argv.slice(3));
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        broker: { type: 'string' },
        meters: { type: 'string' },
        prefix: { type: 'string' },
        profiles: { type: 'string' },
        'profiles-dir': { type: 'string' },
        links: { type: 'string' },
        initial: { type: 'string' },
        'auto-press-ms': { type: 'string' },
        connections: { type: 'string' },
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
    process.stdout.write(USAGE);
    return;
  }

  const log = pino({ level: values['log-level'] ?? 'info', base: { component: 'simulator' } });
  const here = dirname(fileURLToPath(import.meta.url));
  // simulators/cli.ts and dist/simulators/cli.js sit one and two levels below the project root.
  const defaultDir =
    [resolve(here, '..', 'firmware-profiles'), resolve(here, '..', '..', 'firmware-profiles')].find((d) => existsSync(d)) ??
    resolve('firmware-profiles');
  const profilesDir = resolve(values['profiles-dir'] ?? defaultDir);

  const initial = (values.initial ?? 'connected') as RelayState;
  if (!RELAY_STATES.includes(initial)) fail(`--initial must be one of ${RELAY_STATES.join('|')}, got "${values.initial}"`);
  const count = int('meters', values.meters, 1000, 1);
  const links = int('links', values.links, 10, 1);
  const connections = int('connections', values.connections, 4, 1);
  const autoPressMs = values['auto-press-ms'] === undefined ? undefined : int('auto-press-ms', values['auto-press-ms'], 0, 0);

  const all = loadFirmwareProfiles(profilesDir);
  const profileIds = values.profiles ? values.profiles.split(',').map((s) => s.trim()).filter(Boolean) : [...all.keys()];
  const unknown = profileIds.filter((id) => !all.has(id));
  if (unknown.length > 0) fail(`unknown firmware profile(s) ${unknown.join(', ')} (known: ${[...all.keys()].join(', ')})`);
  const notMqtt = profileIds.filter((id) => all.get(id)!.protocol !== 'mqtt');
  if (notMqtt.length > 0) fail(`this simulator speaks MQTT; profile(s) ${notMqtt.join(', ')} are for another protocol`);
  const byId = new Map(profileIds.map((id) => [id, asMqttProfile(all.get(id)!)]));
  const plan = planFleet({ count, prefix: values.prefix ?? 'SIM-', profiles: profileIds, links, regions: [] });

  const fleet = new MqttFleet({
    brokerUrl: values.broker ?? 'mqtt://127.0.0.1:1883',
    connections,
    logger: log,
    // Nothing can inspect the meters of this process: their command logs would only grow.
    keepCommandLog: false,
    meters: plan.map((m) => ({
      meterId: m.meterId,
      profile: byId.get(m.profileId)!,
      initialRelay: initial,
      faults: autoPressMs === undefined ? undefined : { autoPressAfterMs: autoPressMs },
    })),
  });

  let statsTimer: NodeJS.Timeout | undefined;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    clearInterval(statsTimer);
    await fleet.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  await fleet.start();
  log.info(
    { meters: plan.length, first: plan[0]?.meterId, last: plan.at(-1)?.meterId, profiles: profileIds, links, initial, autoPressMs },
    'simulator running',
  );
  statsTimer = setInterval(() => log.info({ counters: fleet.counters, ready: fleet.ready }, 'stats'), 30_000);
}

main().catch((err: unknown) => {
  process.stderr.write(`simulator failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
