import { resolve } from 'node:path';
import { ConfigError, loadConfig } from './config/load-config.js';
import { MeterlineError } from './errors.js';
import { startGateway, writeDemoKeysFile } from './gateway.js';

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
  const gateway = await startGateway(config);
  const keysFile = resolve(config.store.sqlite.path, '..', 'demo-keys.env');
  writeDemoKeysFile(keysFile, gateway);

  const lines = [
    '',
    `Meterline gateway "${config.instanceId}" is running`,
    `  API        ${gateway.apiUrl}      (OpenAPI: ${gateway.apiUrl}/openapi.json, browsable: ${gateway.apiUrl}/docs)`,
    `  broker     ${gateway.brokerUrl} (${config.mqtt.mode})`,
    `  store      ${resolve(config.store.sqlite.path)}`,
  ];
  if (gateway.fleet) lines.push(`  simulator  ${gateway.fleet.size} simulated meters in this process (${[...gateway.fleet.meterIds()][0]} …)`);
  if (gateway.demoKeys) {
    lines.push(
      `  demo keys  operator: ${gateway.demoKeys.operator}`,
      `             billing:  ${gateway.demoKeys.billing}`,
      `             (also in ${keysFile}: run "source ${keysFile}" in another shell)`,
      '',
      'Try, in another shell:',
      `  source ${keysFile}`,
      `  curl -s -X POST $METERLINE_URL/v1/meters/SIM-000001/reconnect -H "Authorization: Bearer $METERLINE_KEY" \\`,
      `       -H "Idempotency-Key: try-1" -H "Content-Type: application/json" -d '{"reason":"payment"}'`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n\n');

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.logger.info({ signal }, 'stopping: finishing attempts on the wire');
    gateway.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  const code = err instanceof MeterlineError ? `${err.code}: ` : '';
  process.stderr.write(`meterline: could not start: ${code}${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
