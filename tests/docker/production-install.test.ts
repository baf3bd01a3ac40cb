import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey, sha256Hex } from '../../src/api/auth.js';
import { runGateway, type GatewayChild } from '../harness/gateway-child.js';
import { freePort, startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';

/**
 * What the Docker image holds, built and run without Docker (no image can be built or pulled on this machine): the
 * program compiled by tsconfig.build.json and `npm ci --omit=dev`, the files the Dockerfile copies, started as the
 * image starts it (NODE_ENV=production, `node dist/src/main.js`), with the image's health check script.
 */
const run = promisify(execFile);
const repo = process.cwd();
let app: string;
let broker: MosquittoBroker;
let gateway: GatewayChild | undefined;

beforeAll(async () => {
  app = mkdtempSync(join(tmpdir(), 'ml-image-'));
  // The Dockerfile's COPY lines for the runtime stage.
  for (const path of ['package.json', 'package-lock.json', 'config', 'firmware-profiles', 'src/console']) cpSync(join(repo, path), join(app, path), { recursive: true });
  await run(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.build.json'), '--outDir', join(app, 'dist')]);
  // The registry's packages (better-sqlite3 may compile from source: minutes on a loaded machine).
  await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, maxBuffer: 16 * 1024 * 1024 });
  broker = await startMosquitto();
}, 900_000);

afterAll(async () => {
  await gateway?.stop();
  await broker?.stop();
  // The install is a few hundred MB (node_modules).
  if (app) rmSync(app, { recursive: true, force: true });
});

describe('the production install', () => {
  it('holds the program only: no test code, no dev dependencies', () => {
    expect(readdirSync(join(app, 'dist')).sort()).toEqual(['drivers', 'simulators', 'src']);
    expect(existsSync(join(app, 'dist/src/main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist/src/healthcheck.js'))).toBe(true);
    for (const dev of ['vitest', 'typescript', 'playwright-core']) expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
  });

  it('starts in production mode, serves /healthz on the configured port, makes no demo keys; the health check finds it', async () => {
    const port = await freePort();
    const key = newApiKey('op');
    const env = {
      NODE_ENV: 'production',
      METERLINE__API__PORT: String(port),
      METERLINE__MQTT__URL: broker.url,
      METERLINE__AUTH__KEYS: JSON.stringify([{ name: 'ops', role: 'operator', sha256: sha256Hex(key) }]),
    };
    gateway = runGateway({ cwd: app, main: join(app, 'dist/src/main.js'), env });
    await gateway.started();

    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { status: string }).status).toBe('ok');
    const me = await fetch(`http://127.0.0.1:${port}/v1/whoami`, { headers: { authorization: `Bearer ${key}` } });
    expect(((await me.json()) as { role: string }).role).toBe('operator');

    // No demo: no keys printed or logged, no keys file, no simulated fleet.
    expect(gateway.stderr).not.toContain('demo keys');
    expect(gateway.stdout).not.toMatch(/demo/i);
    expect(existsSync(join(app, 'data/demo-keys.env'))).toBe(false);
    expect(gateway.stderr).not.toContain('simulator');

    // The image's HEALTHCHECK command, from the same environment: the configured port, not 8080.
    const healthcheck = (extra: Record<string, string>) => run(process.execPath, ['dist/src/healthcheck.js'], { cwd: app, env: { ...process.env, ...env, ...extra } });
    await expect(healthcheck({})).resolves.toMatchObject({ stdout: expect.stringContaining(`:${port}/healthz: 200`) });
    await expect(healthcheck({ METERLINE__API__PORT: String(await freePort()) })).rejects.toMatchObject({ code: 1 });

    expect(await gateway.stop()).toEqual({ code: 0, signal: null });
    await expect(healthcheck({})).rejects.toMatchObject({ code: 1 });
  });
});
