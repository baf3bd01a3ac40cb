import type { LinkHealth } from '../../drivers/driver.js';
import type { SwitchController } from '../control/switch-controller.js';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import type { GatewayStore, RelayAuditRun, SubmitContext } from '../store/store.js';
import type { AuditAnchor } from '../store/audit-chain.js';
import type { EventEmitter } from 'node:events';
import type { ApiKeyRegistry } from './auth.js';
import type { SuccessRateMonitor } from '../control/success-rate-monitor.js';
import type { CreditController } from '../control/credit-controller.js';
import type { MoneyLimits } from '../domain/money.js';
import type { MasterKey } from '../keys/key-envelope.js';
import type { KeyRenewalResult } from '../keys/key-renewal.js';
import type { HttpRequestObserver } from './http-metrics.js';

/** Why a live-event client was cut off: its socket took nothing for too long, or too many orders waited for it. */
export type LiveClientDropReason = 'stalled' | 'backlog';

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
  /** How far a `GET /v1/events` client may fall behind before it is cut off, and where each cut-off is counted. */
  liveEvents: { stallMs: number; maxPendingOrders: number; onClientDropped?: (reason: LiveClientDropReason) => void; onClientCount?: (connected: number) => void };
  /** Prometheus exposition, and where each request's duration is observed (src/api/http-metrics.ts). */
  metrics?: { render(): Promise<string>; contentType: string; httpRequestDuration?: HttpRequestObserver };
  /** Requests per key per window before 429 E_RATE_LIMITED. */
  rateLimit: { max: number; timeWindowMs: number };
  /** The bounds on money taken at the edge (config `payments`, money.ts). */
  money: MoneyLimits;
  /** Prepayment credit control. */
  credit?: Pick<CreditController, 'evaluate' | 'grantEmergencyCredit' | 'state' | 'onMeterSwap'>;
  /** The audit anchors written outside the database (the configured anchor file), checked by GET /v1/audit/verify. */
  auditAnchors?: () => AuditAnchor[];
  /** Run the daily relay audit now. */
  relayAudit?: () => Promise<RelayAuditRun>;
  /** Per-meter DLMS keys: the key master (undefined: importing keys is refused) and where transport keys are looked up. */
  meterKeys?: { master: MasterKey | undefined; env: NodeJS.ProcessEnv; renew?: (meterId: string, actor: string) => Promise<KeyRenewalResult> };
  /** Every link the drivers keep, with its state and counters (GET /v1/links); none before the drivers start. */
  links?: () => LinkHealth[];
  /** The MQTT contract's server for GET /asyncapi.json: the broker the gateway uses (embedded or configured) and its instance id. */
  mqttContract?: () => { brokerUrl: string; embedded: boolean; instanceId: string };
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
