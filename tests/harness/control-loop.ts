import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { MeterDriver } from '../../drivers/driver.js';
import { systemClock } from '../../src/control/clock.js';
import { SwitchController, type ControllerDeps } from '../../src/control/switch-controller.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { HttpPaymentRechecker } from '../../src/integrations/billing-recheck.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { GatewayStore, MeterRecord } from '../../src/store/store.js';
import { openPolicy } from './test-policy.js';

/**
 * The real control loop and a real SQLite store around one driver, without the HTTP API: for protocol tests that
 * switch meters on a serial bus. The billing re-check is never reached (these tests switch for other reasons).
 */
export interface ControlLoop<S extends GatewayStore = SqliteStore> {
  store: S;
  controller: SwitchController;
  /** What meters reported against their firmware profile (the controller's onProfileMismatch). */
  profileMismatches: { meterId: string; profileId: string; field: string }[];
  /** Every refusal of the gateway's credentials the controller reported (its onAuthFailure), in order. */
  authFailures: { meterId: string; protocol: string; link: string }[];
  stop(): Promise<void>;
}

export type LoopHooks = Pick<ControllerDeps, 'onAuthFailure' | 'onAttempt'>;

export async function startControlLoop(options: {
  protocol: string;
  driver: MeterDriver;
  profiles: readonly FirmwareProfile[];
  meters: readonly MeterRecord[];
  linkConcurrency: number;
  logger: Logger;
  hooks?: LoopHooks;
}): Promise<ControlLoop>;
/** With `openStore`: the loop runs on that store (PostgreSQL, say) instead of a fresh SQLite file; it is closed on stop. */
export async function startControlLoop<S extends GatewayStore>(options: {
  protocol: string;
  driver: MeterDriver;
  profiles: readonly FirmwareProfile[];
  meters: readonly MeterRecord[];
  linkConcurrency: number;
  logger: Logger;
  openStore: () => Promise<S>;
  /** Called besides the harness's own records (metrics, say, wired as the gateway wires them). */
  hooks?: LoopHooks;
}): Promise<ControlLoop<S>>;
export async function startControlLoop(options: {
  protocol: string;
  driver: MeterDriver;
  profiles: readonly FirmwareProfile[];
  meters: readonly MeterRecord[];
  linkConcurrency: number;
  logger: Logger;
  openStore?: () => Promise<GatewayStore>;
  hooks?: LoopHooks;
}): Promise<ControlLoop<GatewayStore>> {
  const dir = mkdtempSync(join(tmpdir(), `meterline-${options.protocol}-loop-`));
  const policy = openPolicy();
  const store = options.openStore ? await options.openStore() : new SqliteStore(join(dir, 'meterline.db'));
  await store.migrate();
  await store.upsertMeters(options.meters, Date.now());
  const profileMismatches: ControlLoop['profileMismatches'] = [];
  const authFailures: ControlLoop['authFailures'] = [];
  const controller = new SwitchController({
    store,
    drivers: new Map<string, MeterDriver>([[options.protocol, options.driver]]),
    profiles: new Map<string, FirmwareProfile>(options.profiles.map((p) => [p.id, p])),
    clock: systemClock,
    logger: options.logger,
    options: { tickMs: 50, linkConcurrency: options.linkConcurrency, links: {}, shutdownGraceMs: 1000, leaseMs: 30_000 },
    instanceId: `${options.protocol}-loop`,
    policy,
    payments: new HttpPaymentRechecker(policy.paymentRecheck),
    onProfileMismatch: (m) => profileMismatches.push(m),
    onAuthFailure: (r) => {
      authFailures.push(r);
      options.hooks?.onAuthFailure?.(r);
    },
    ...(options.hooks?.onAttempt ? { onAttempt: options.hooks.onAttempt } : {}),
  });
  await controller.start();
  return {
    store,
    controller,
    profileMismatches,
    authFailures,
    async stop() {
      await controller.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
