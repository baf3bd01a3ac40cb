import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { MeterDriver } from '../../drivers/driver.js';
import { systemClock } from '../../src/control/clock.js';
import { SwitchController } from '../../src/control/switch-controller.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { HttpPaymentRechecker } from '../../src/integrations/billing-recheck.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { MeterRecord } from '../../src/store/store.js';
import { openPolicy } from './test-policy.js';

/**
 * The real control loop and a real SQLite store around one driver, without the HTTP API: for protocol tests that
 * switch meters on a serial bus. The billing re-check is never reached (these tests switch for other reasons).
 */
export interface ControlLoop {
  store: SqliteStore;
  controller: SwitchController;
  /** What meters reported against their firmware profile (the controller's onProfileMismatch). */
  profileMismatches: { meterId: string; profileId: string; field: string }[];
  stop(): Promise<void>;
}

export async function startControlLoop(options: {
  protocol: string;
  driver: MeterDriver;
  profiles: readonly FirmwareProfile[];
  meters: readonly MeterRecord[];
  linkConcurrency: number;
  logger: Logger;
}): Promise<ControlLoop> {
  const dir = mkdtempSync(join(tmpdir(), `meterline-${options.protocol}-loop-`));
  const policy = openPolicy();
  const store = new SqliteStore(join(dir, 'meterline.db'));
  await store.migrate();
  await store.upsertMeters(options.meters, Date.now());
  const profileMismatches: ControlLoop['profileMismatches'] = [];
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
  });
  await controller.start();
  return {
    store,
    controller,
    profileMismatches,
    async stop() {
      await controller.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
