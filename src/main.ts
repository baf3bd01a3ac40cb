import { resolve } from 'node:path';
import { ConfigError, loadConfig } from './config/load-config.js';
import { MeterlineError } from './errors.js';
import { describePostgres } from './store/store-availability.js';
import type { RunningGateway } from './gateway.js';
import { startJournalEarly } from './gateway/own-store-early.js';
import { DEMO_KEY_ENV, DEMO_ROLES, demoKeysFile, demoKeysFor, writeDemoKeysFile } from './gateway/demo-keys.js';

/** The program's own arguments; the configuration comes from files and the environment. */
const ARGS_USAGE = 'usage: node dist/src/main.js [--new-keys]   (--new-keys: replace the demo keys kept in the data directory)';

/** `npm start`: run the gateway on the configuration in config/ (+ METERLINE_CONFIG, + METERLINE__* env). */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`meterline: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--new-keys');
  const newKeys = args.includes('--new-keys');
  if (unknown.length > 0 || (newKeys && !config.auth.demoKeys)) {
    const why = unknown.length > 0 ? `unknown argument ${unknown.map((a) => `"${a}"`).join(', ')}` : '--new-keys replaces demo keys, and auth.demoKeys is off';
    process.stderr.write(`meterline: E_USAGE: ${why}\n${ARGS_USAGE}\n`);
    process.exit(2);
  }
  // Demo keys outlive a restart (sourced shells and open consoles keep working) until --new-keys replaces them.
  const keysFile = demoKeysFile(config);
  const demoKeys = config.auth.demoKeys ? demoKeysFor(keysFile, newKeys) : undefined;
  // Signals are handled from the first moment: a SIGTERM during start stops the gateway as soon as it is up (a
  // start does nothing on the wire before it owns its store and port), and SIGHUP never kills it silently.
  const signals = watchSignals();
  // The journal's thread starts now and opens the file on the other core while this thread loads the rest of the
  // program (fastify, the drivers): a start, and so a recovery after a crash, is that much shorter (issue 19).
  const journal = startJournalEarly(config);
  const [{ startGateway }, { publicBrokerUrl }] = await Promise.all([import('./gateway.js'), import('../drivers/mqtt/mqtt-driver.js')]);
  const gateway = await startGateway(config, { ...(demoKeys ? { demoKeys } : {}), ...(journal ? { journal } : {}) });
  signals.started(gateway);
  if (gateway.demoKeys) writeDemoKeysFile(keysFile, gateway.apiUrl, gateway.demoKeys);

  const lines = [
    '',
    `Meterline gateway "${config.instanceId}" is running`,
    `  API        ${gateway.apiUrl}      (OpenAPI: ${gateway.apiUrl}/openapi.json, browsable: ${gateway.apiUrl}/docs)`,
    `  broker     ${publicBrokerUrl(gateway.brokerUrl)} (${config.mqtt.mode})`,
    `  store      ${config.store.kind === 'postgres' && config.store.postgres ? describePostgres(config.store.postgres.url, config.store.postgres.schema ?? undefined) : resolve(config.store.sqlite.path)}`,
    `  stop       SIGTERM or Ctrl-C: no new orders, attempts on the wire finish (up to ${config.control.shutdownGraceMs} ms), exit 0`,
  ];
  if (gateway.fleet) lines.push(`  simulator  ${gateway.fleet.size} simulated meters in this process (${[...gateway.fleet.meterIds()][0]} …)`);
  if (gateway.demoKeys) {
    const keys = gateway.demoKeys;
    lines.push(
      ...DEMO_ROLES.map((role, i) => `  ${i === 0 ? 'demo keys' : '         '}  ${`${role}:`.padEnd(12)}${keys[role]}   ($${DEMO_KEY_ENV[role]})`),
      `             kept in ${keysFile} (mode 0600, a demo convenience) across restarts; --new-keys replaces them`,
      '',
      'Try, in another shell:',
      `  source ${keysFile}`,
      `  curl -s -X POST $METERLINE_URL/v1/meters/SIM-000001/reconnect -H "Authorization: Bearer $METERLINE_KEY" \\`,
      `       -H "Idempotency-Key: try-1" -H "Content-Type: application/json" -d '{"reason":"payment"}'`,
    );
  }
  // On stderr: stdout is the log alone, so `npm start | jq` reads every line of it.
  process.stderr.write(lines.join('\n') + '\n\n');
}

/**
 * SIGTERM and SIGINT drain: the gateway stops admitting work (503 E_SHUTTING_DOWN; /healthz `stopping`), the
 * attempts on the wire finish for up to `control.shutdownGraceMs`, what happened is logged, and the process exits 0.
 * A second SIGTERM or SIGINT exits at once (code 1): attempts still on the wire are verified by a read at the next
 * start. SIGHUP is ignored and logged: the configuration is read at start only (there is no reload).
 */
function watchSignals(): { started(gateway: RunningGateway): void } {
  let gateway: RunningGateway | undefined;
  let requested: NodeJS.Signals | undefined;
  let stopping = false;
  const say = (level: 'info' | 'warn', fields: Record<string, unknown>, message: string) => {
    if (gateway) gateway.logger[level](fields, message);
    else process.stderr.write(`meterline: ${message}\n`);
  };
  const drain = (signal: NodeJS.Signals) => {
    if (!gateway || stopping) return;
    stopping = true;
    const started = Date.now();
    say('info', { signal, graceMs: gateway.config.control.shutdownGraceMs }, `${signal}: stopping; no new work is admitted (503 E_SHUTTING_DOWN), attempts on the wire finish first`);
    gateway.stop().then(
      () => {
        say('info', { signal, tookMs: Date.now() - started }, 'stopped; orders not yet started stay queued for the next start');
        process.exit(0);
      },
      (err: unknown) => {
        say('warn', { signal, err }, 'stopped with an error');
        process.exit(1);
      },
    );
  };
  const onStop = (signal: NodeJS.Signals) => {
    if (stopping) {
      say('warn', { signal }, `${signal} again: exiting now without waiting; attempts still on the wire are verified by a read at the next start`);
      process.exit(1);
    }
    if (!gateway) {
      if (requested) {
        say('warn', { signal }, `${signal} again while starting: exiting now`);
        process.exit(1);
      }
      requested = signal;
      say('info', { signal }, `${signal} while starting: stopping as soon as the start is done (again to exit at once)`);
      return;
    }
    drain(signal);
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));
  process.on('SIGHUP', () => say('info', { signal: 'SIGHUP' }, 'SIGHUP ignored: the configuration is read at start only; to apply a change, stop (SIGTERM) and start the gateway'));
  return {
    started(g) {
      gateway = g;
      if (requested) drain(requested);
    },
  };
}

main().catch((err: unknown) => {
  // Catalogue errors (a taken port, a store another gateway owns, a store that cannot be opened) print their code.
  const text = err instanceof MeterlineError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  process.stderr.write(`meterline: could not start: ${text}\n`);
  process.exit(1);
});
