import { ConfigError, loadConfig } from './config/load-config.js';

/**
 * The container's health check (Dockerfile HEALTHCHECK): GET /healthz on the port the gateway is configured with (the
 * same files and METERLINE__* variables it reads), exit 0 when it answers 200 (`ok` or `degraded`), 1 otherwise.
 */
async function check(): Promise<number> {
  const { api } = loadConfig();
  // A gateway listening on every interface is reached on loopback from inside its container.
  const host = api.host === '0.0.0.0' || api.host === '::' ? '127.0.0.1' : api.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${api.port}/healthz`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(4000) });
    const body = await res.text();
    process.stdout.write(`${url}: ${res.status} ${body}\n`);
    return res.status === 200 ? 0 : 1;
  } catch (err) {
    process.stdout.write(`${url}: ${(err as Error).message}\n`);
    return 1;
  }
}

check().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`meterline healthcheck: ${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
