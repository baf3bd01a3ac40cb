import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/config-schema.js';
import type { Clock } from '../control/clock.js';
import { ReadingScheduler } from '../control/reading-scheduler.js';
import type { RelayAuditRunner } from '../control/relay-audit-runner.js';
import { SingletonDuty, type DutyJob } from '../control/singleton-duty.js';
import type { SuccessRateMonitor } from '../control/success-rate-monitor.js';
import type { SwitchController } from '../control/switch-controller.js';
import { CallbackDispatcher } from '../integrations/callback-dispatcher.js';
import { NotificationDispatcher, type NotificationRoute } from '../integrations/notification-dispatcher.js';
import type { GatewayStore } from '../store/store.js';

export interface SingletonWiring {
  config: GatewayConfig;
  store: GatewayStore;
  clock: Clock;
  logger: Logger;
  controller: SwitchController;
  monitor: SuccessRateMonitor;
  relayAudit: RelayAuditRunner;
}

/**
 * Work done once across all instances, by the instance holding the singleton duty: the success-rate monitor,
 * scheduled readings, the relay audit, billing callbacks and webhooks. Built here; `duty.start()` takes the duty.
 */
export function wireSingletonJobs(w: SingletonWiring): { duty: SingletonDuty; readings: ReadingScheduler } {
  const { config, store, clock, logger, controller, monitor, relayAudit } = w;
  const jobs: DutyJob[] = [{ name: 'success-rate monitor', start: () => monitor.start(), stop: () => monitor.stop() }];
  const readings = new ReadingScheduler({
    schedules: config.readings.schedules,
    concurrencyPerLink: config.readings.concurrencyPerLink,
    timezone: config.readings.timezone,
    logger: logger.child({ component: 'readings' }),
    listMeters: async (after, limit) => (await store.listMeters(after, limit)).map((m) => ({ meterId: m.meterId, link: m.link })),
    read: async (meterId) => {
      const r = await controller.readNow(meterId);
      return r.ok ? { ok: true } : { ok: false, skipped: r.cause === 'busy', authFailed: r.cause === 'auth_failed' };
    },
  });
  jobs.push({ name: 'scheduled readings', start: () => readings.start(), stop: () => readings.stop() });
  jobs.push({ name: 'relay audit', start: () => relayAudit.start(), stop: () => relayAudit.stop() });
  const callbacks = new CallbackDispatcher(store, clock, config.callbacks, logger.child({ component: 'callbacks' }));
  jobs.push({ name: 'billing callbacks', start: () => callbacks.start(), stop: () => callbacks.stop() });
  const routes: NotificationRoute[] = [];
  if (config.notifications.webhookUrl) {
    routes.push({ kindPrefix: 'pre_disconnect_notice', url: config.notifications.webhookUrl, secret: config.notifications.secret });
    routes.push({ kindPrefix: 'customer.', url: config.notifications.webhookUrl, secret: config.notifications.secret });
  }
  if (config.fieldService.webhookUrl) routes.push({ kindPrefix: 'work_order.', url: config.fieldService.webhookUrl, secret: config.fieldService.secret });
  if (config.successRates.alertWebhookUrl) routes.push({ kindPrefix: 'alert.', url: config.successRates.alertWebhookUrl, secret: config.successRates.alertSecret });
  if (!config.notifications.webhookUrl) {
    logger.warn('no customer channel configured (notifications.webhookUrl): pre-disconnect notices cannot be delivered, so disconnects for arrears wait at E_SECOND_NOTICE_UNDELIVERED (DOMAIN.md rule 2)');
  }
  if (routes.length > 0) {
    const dispatcher = new NotificationDispatcher(store, routes, config.notifications.pollMs, clock, logger.child({ component: 'notifications' }));
    jobs.push({ name: 'webhooks', start: () => dispatcher.start(), stop: () => dispatcher.stop() });
  }
  const duty = new SingletonDuty({ store, clock, owner: config.instanceId, leaseMs: config.control.leaseMs, logger: logger.child({ component: 'duty' }), jobs });
  return { duty, readings };
}
