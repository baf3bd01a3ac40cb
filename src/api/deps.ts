import type { SwitchController } from '../control/switch-controller.js';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import type { GatewayStore, RelayAuditRun, SubmitContext } from '../store/store.js';
import type { EventEmitter } from 'node:events';
import type { ApiKeyRegistry } from './auth.js';
import type { SuccessRateMonitor } from '../control/success-rate-monitor.js';
import type { CreditController } from '../control/credit-controller.js';

/** What the HTTP routes need from the rest of the gateway. */
export interface ApiDeps {
  store: GatewayStore;
  controller: Pick<SwitchController, 'wake' | 'inFlightByLink' | 'readNow'>;
  /** Thresholds for the supply answer (DOMAIN.md rule 18). */
  supply: { noVoltageBelowV: number; staleAfterMs: number };
  profiles: ReadonlyMap<string, FirmwareProfile>;
  keys: ApiKeyRegistry;
  submitContext: () => SubmitContext;
  successRates: Pick<SuccessRateMonitor, 'latest' | 'evaluate'>;
  /** The thresholds the rates are judged against (shown with the rates). */
  successRateThresholds: { alertBelow: number; minSamples: number; breakerBelow: number };
  /** Live events for the console (server-sent events): 'order' with a SwitchOrder after every change. */
  events: EventEmitter;
  /** Prometheus exposition. */
  metrics?: { render(): Promise<string>; contentType: string };
  /** Requests per key per window before 429 E_RATE_LIMITED. */
  rateLimit: { max: number; timeWindowMs: number };
  /** Prepayment credit control. */
  credit?: Pick<CreditController, 'evaluate' | 'grantEmergencyCredit' | 'state' | 'onMeterSwap'>;
  /** Run the daily relay audit now. */
  relayAudit?: () => Promise<RelayAuditRun>;
  /** The gateway's health checks by name (store writable, broker connected, control loop running). */
  health: () => Record<string, HealthCheck>;
  /** True once the gateway is stopping (SIGTERM/SIGINT): writes answer 503 E_SHUTTING_DOWN, reads still work. */
  stopping: () => boolean;
}

/** One health check: whether it passes, and when not, what is wrong, naming the thing (the broker, the store's file). */
export interface HealthCheck {
  ok: boolean;
  detail?: string;
}
