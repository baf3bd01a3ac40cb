import { z } from 'zod';
import { GENERATED_CLIENT_PREFIX } from '../domain/client-identity.js';
import { PolicyConfigSchema } from '../domain/policy/policy-config.js';
import { MoneyLimitsSchema } from '../domain/money.js';
import { CreditLedgerConfigSchema } from '../domain/prepayment/credit-ledger.js';
import { TariffSchema } from '../domain/prepayment/tariff.js';
import { DlmsLinksConfigSchema } from '../../drivers/dlms/dlms-config.js';
import { ModbusLinksConfigSchema } from '../../drivers/modbus/modbus-config.js';

/**
 * The gateway's configuration. `config/default.json` holds the embedded defaults (SQLite, in-process broker,
 * simulated fleet); a deployment overrides them with its own file (METERLINE_CONFIG) and environment variables.
 */
const port = z.number().int().min(0).max(65535);

export const ApiKeySchema = z
  .object({
    /**
     * The client this key belongs to, by id, and its label: keys with the same name here are one client (a person
     * with an operator and a supervisor key). `cli_` is reserved for clients created through the API.
     */
    name: z
      .string()
      .min(1)
      .refine((n) => !n.startsWith(GENERATED_CLIENT_PREFIX), 'a configured key name may not start with "cli_" (reserved for the ids of clients created through the API)'),
    role: z.enum(['operator', 'billing', 'field', 'supervisor', 'auditor', 'admin']),
    /** SHA-256 of the key, hex; the key itself is never stored. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lower-case hex digits (sha256 of the key)'),
  })
  .strict();

export const ConfigSchema = z
  .object({
    /** Names this gateway instance in logs and in its MQTT client id. */
    instanceId: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, 'letters, digits, "_" and "-", at most 40'),
    api: z
      .object({
        host: z.string().min(1),
        port,
        /** Requests per API key per window; beyond it 429 E_RATE_LIMITED. */
        rateLimit: z.object({ max: z.number().int().min(1), timeWindowMs: z.number().int().min(100) }).strict(),
        /**
         * `GET /v1/events` clients that stop reading: one whose socket has taken nothing for `stallMs` while events
         * wait for it, or with more than `maxPendingOrders` changed orders waiting, is cut off (it reconnects).
         */
        liveEvents: z.object({ stallMs: z.number().int().min(500), maxPendingOrders: z.number().int().min(100) }).strict(),
      })
      .strict(),
    /** Delivery of billing callbacks (issue 7). */
    callbacks: z
      .object({ pollMs: z.number().int().min(10), concurrency: z.number().int().min(1).max(1000), timeoutMs: z.number().int().min(100), maxRetryDelayMs: z.number().int().min(1000) })
      .strict(),
    /**
     * Bounds on money (issue 14), whole minor units: the largest payment or top-up, and the largest credit balance a
     * top-up may leave on a prepayment meter. Neither may exceed 1,000,000,000 (money.ts).
     */
    payments: MoneyLimitsSchema,
    store: z
      .object({
        /** `sqlite`: one instance, a file. `postgres`: several instances sharing work (DATABASE_URL selects it too). */
        kind: z.enum(['sqlite', 'postgres']),
        sqlite: z
          .object({
            path: z.string().min(1),
            /**
             * Where the journal's statements run: `worker` (the default when absent), a thread of its own, so the main
             * thread keeps its CPU for the control loop, the drivers and the API; `main`, on the main thread.
             */
            thread: z.enum(['worker', 'main']).optional(),
          })
          .strict(),
        postgres: z
          .object({
            url: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// URL'),
            /** The schema the gateway's tables live in. */
            schema: z.string().regex(/^[a-z_][a-z0-9_]*$/, 'lower-case letters, digits and "_"').nullable(),
            maxConnections: z.number().int().min(1).max(200),
          })
          .strict()
          .nullable(),
      })
      .strict(),
    mqtt: z
      .object({
        /** `embedded`: an in-process broker (demo and tests only); `external`: connect to `url`. */
        mode: z.enum(['embedded', 'external']),
        url: z.string().regex(/^(mqtt|mqtts|ws|wss|tcp):\/\//, 'an mqtt://, mqtts://, ws:// or wss:// URL'),
        embeddedPort: port,
        /** Requests in flight per broker connection; keep below the broker's per-client queue (mosquitto: 1000). */
        maxInFlight: z.number().int().min(1).max(900),
        /**
         * Shared-subscription group for meters' status reports (`$share/<group>/…`): each report reaches one
         * instance of the group instead of all of them. null: a plain subscription (the embedded broker has no
         * shared subscriptions and ignores this).
         */
        /** MQTT keepalive: a silently dead connection is given up after 1.5 × this with nothing heard. */
        keepaliveSec: z.number().int().min(2).max(300),
        sharedGroup: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, 'letters, digits, "_" and "-", at most 40').nullable(),
      })
      .strict(),
    profilesDir: z.string().min(1),
    /** Modbus RTU buses (serial) and Modbus TCP gateways by link name. */
    modbus: ModbusLinksConfigSchema,
    /** DLMS/COSEM serial ports by link name, and where each DLMS profile's password comes from. */
    dlms: DlmsLinksConfigSchema,
    control: z
      .object({
        /** How often the loop looks for due orders when nothing wakes it. */
        tickMs: z.number().int().min(10).max(60_000),
        /** Commands in flight per link unless the link is listed in `links`. */
        linkConcurrency: z.number().int().min(1).max(10_000),
        links: z.record(z.string(), z.object({ concurrency: z.number().int().min(1).max(10_000) }).strict()),
        /** How long a graceful stop waits for attempts on the wire. */
        shutdownGraceMs: z.number().int().min(0).max(600_000),
        /**
         * How long an order on the wire stays this instance's without a renewal (renewed every third of it).
         * After an instance dies, another takes its in-flight orders over once this has run out.
         */
        leaseMs: z.number().int().min(1000).max(600_000),
      })
      .strict(),
    reconnect: z
      .object({
        /** DOMAIN.md rule 11: back on supply within this many hours of payment. Shorter is better. */
        limitHours: z.number().positive().max(24),
      })
      .strict(),
    auth: z
      .object({
        keys: z.array(ApiKeySchema),
        /** Demo keys for the operator, billing, supervisor, field and admin roles, printed at start-up and kept in demo-keys.env (demo only; never in production). */
        demoKeys: z.boolean(),
      })
      .strict(),
    fleet: z
      .object({
        /** Register a simulated fleet's meters at start-up (the same layout the simulator uses). */
        seed: z
          .object({
            count: z.number().int().min(0).max(1_000_000),
            prefix: z.string().min(1).max(20),
            profiles: z.array(z.string().min(1)).min(1),
            links: z.number().int().min(1).max(10_000),
            regions: z.array(z.string().min(1)).min(1),
          })
          .strict()
          .nullable(),
      })
      .strict(),
    simulator: z
      .object({
        /** Run the simulated fleet inside the gateway process (demo). */
        inProcess: z.boolean(),
        /** Share of simulated meters that start disconnected (off for arrears), 0..1. */
        disconnectedShare: z.number().min(0).max(1),
        /** The simulated customer presses the button this long after an arms-only meter is armed. */
        autoPressMs: z.number().int().min(0).nullable(),
      })
      .strict(),
    demo: z
      .object({
        /** Every this many ms, the demo submits a reconnect for a disconnected meter ("a payment arrived"). 0 = off. */
        reconnectEveryMs: z.number().int().min(0),
        /**
         * A simulated billing system in the gateway process, on a port of its own (127.0.0.1): it answers the payment
         * re-check (rule 3) and takes the pre-disconnect notifications (rule 2, HMAC-signed), over HTTP as production
         * systems do. Used only in the demo (simulated fleet in process, demo keys) and only where
         * `policy.paymentRecheck.url` / `notifications.webhookUrl` are not configured.
         */
        billing: z.boolean().default(false),
        /** Every this many ms the demo drafts a disconnect plan for arrears (billing) and approves it (supervisor). 0 = off. */
        planEveryMs: z.number().int().min(0).default(0),
        /** Meters in each demo plan. */
        planMeters: z.number().int().min(1).max(50).default(2),
        /**
         * The demo's calendar: disconnect windows open at every hour of every day, and the pre-disconnect notice this
         * many minutes before the command (rule 2 says 30; a demo may shorten it so a plan is seen to finish). Applied
         * only in the demo; null keeps the configured policy.
         */
        policy: z.object({ alwaysOpen: z.boolean(), secondNoticeMinutes: z.number().int().min(0).max(30) }).strict().nullable().default(null),
      })
      .strict(),
    /** Field escalation of reconnects that cannot finish remotely (DOMAIN.md rule 11). */
    escalation: z
      .object({
        /** The crew needs this many of the 24 hours: a reconnect with less left goes to the field. */
        fieldLeadHours: z.number().min(0).max(24),
        /** Per-region lead times (rural regions need longer). */
        regionLeadHours: z.record(z.string(), z.number().min(0).max(24)),
        /** A work order is due this long before the customer's deadline. */
        dueMarginMinutes: z.number().int().min(0).max(24 * 60),
        /** Remote retries after escalation, this far apart. */
        slowRetryMs: z.number().int().min(100).max(24 * 3_600_000),
        /** Disconnects that fail remotely become work orders only when set. */
        disconnectFailures: z.boolean(),
        /** How often open reconnects are checked against their deadline. */
        scanEveryMs: z.number().int().min(100).max(3_600_000),
      })
      .strict(),
    /** Where work orders go: the crew's field-service system (HMAC-signed webhook, retried; null = API only). */
    fieldService: z.object({ webhookUrl: z.string().url().nullable(), secret: z.string().min(16).nullable() }).strict(),
    /** Success-rate monitoring and the disconnect circuit breaker (DOMAIN.md rule 16). */
    successRates: z
      .object({
        /** Rolling windows evaluated, in minutes. */
        windowMinutes: z.array(z.number().positive().max(7 * 24 * 60)).min(1),
        /** A rate below this (with enough samples) raises an alert; Texas rule 25.490 sets 95% for reconnects. */
        alertBelow: z.number().min(0).max(1),
        minSamples: z.number().int().min(1),
        /** A profile, link or region alerts only when its failures span at least this many distinct meters: a few dead meters are not a link fault. */
        minDistinctMeters: z.number().int().min(1).default(5),
        /** Disconnect success below this stops new disconnects for the population until an operator resets it. */
        breakerBelow: z.number().min(0).max(1),
        breakerMinSamples: z.number().int().min(1),
        evaluateEveryMs: z.number().int().min(100).max(3_600_000),
        /** Where alerts go (HMAC-signed webhook); null = log, metric and API only. */
        alertWebhookUrl: z.string().url().nullable(),
        alertSecret: z.string().min(16).nullable(),
      })
      .strict(),
    /** Scheduled reads of relay state, voltage and energy (node-cron expressions). */
    readings: z
      .object({
        schedules: z.array(z.object({ name: z.string().min(1), cron: z.string().min(1) }).strict()),
        /** Routine reads on the wire per link at once; commands keep priority. */
        concurrencyPerLink: z.number().int().min(1).max(1000),
        timezone: z.string().min(1),
      })
      .strict(),
    /** Abnormal consumption (DOMAIN.md rule 20). */
    consumption: z
      .object({
        maxWhPerHour: z.number().positive(),
        continuousHours: z.number().positive(),
        continuousMinWhPerHour: z.number().min(0),
      })
      .strict(),
    /** Prepayment credit control: tariff (minor units per kWh), low-credit warnings, emergency credit. */
    prepayment: z.object({ tariff: TariffSchema, credit: CreditLedgerConfigSchema }).strict(),
    /** The daily relay audit (DOMAIN.md rule 17). */
    relayAudit: z
      .object({
        cron: z.string().min(1),
        /** A meter not read for longer than this is an exception (not_read). */
        maxObservationAgeHours: z.number().positive(),
        /** A relay armed by our reconnect for longer than this is an exception (armed_too_long): the customer was never told. */
        maxArmedHours: z.number().positive().max(24 * 30),
        /** A relay open with no order, or closed while it should be open, gets an inspection work order: someone must look. */
        workOrders: z.boolean(),
        /** An inspection work order is due this long after the audit that raised it. */
        inspectionDueHours: z.number().positive().max(24 * 14),
      })
      .strict(),
    /** Readings and attempt outcomes to an InfluxDB-protocol server (InfluxDB 2, VictoriaMetrics); url null = off. */
    timeSeries: z
      .object({
        url: z.string().url().nullable(),
        token: z.string(),
        org: z.string().min(1),
        bucket: z.string().min(1),
        batchSize: z.number().int().min(1).max(100_000),
        flushIntervalMs: z.number().int().min(10).max(600_000),
        maxBufferLines: z.number().int().min(1).max(10_000_000),
        maxRetries: z.number().int().min(0).max(100),
      })
      .strict(),
    /** "Fault or disconnect?" (DOMAIN.md rule 18). */
    supply: z
      .object({
        /** A closed relay with less than this voltage is a supply fault. */
        noVoltageBelowV: z.number().min(0).max(400),
        /** An observation older than this is refreshed by a live read before answering. */
        staleAfterMs: z.number().int().min(1000),
      })
      .strict(),
    /** The disconnect rules of DOMAIN.md, each with a safe default. */
    policy: PolicyConfigSchema,
    notifications: z
      .object({
        /** Where pre-disconnect notifications go (the customer-channel system); null = recorded only. */
        webhookUrl: z.string().url().nullable(),
        /** HMAC-SHA256 key for the X-Meterline-Signature header; from the environment in production. */
        secret: z.string().min(16).nullable(),
        pollMs: z.number().int().min(50).max(60_000),
      })
      .strict(),
    /** The audit chain's key and anchors (issue 14; README "Security"). */
    audit: z
      .object({
        /**
         * The file holding the chain's HMAC key (hex); METERLINE_AUDIT_KEY, when set, wins. null: `audit.key` beside
         * the SQLite database, made there (mode 0600) on first start; PostgreSQL has no default: name a file every
         * instance reads, or set METERLINE_AUDIT_KEY. Never inside the database or its backups.
         */
        keyFile: z.string().min(1).nullable(),
        /** One JSON line per anchor (time, entries, head link, key id). null: `<database>.audit-anchors.jsonl` beside the SQLite file; none on PostgreSQL. */
        anchorFile: z.string().min(1).nullable(),
        /** Also log each anchor (info, "audit anchor"): a log shipped off the host keeps the anchors out of reach. */
        anchorLog: z.boolean(),
        /** An anchor this often (and one at start and at stop); 0: at start and stop only. */
        anchorEveryMs: z.number().int().min(0),
      })
      .strict(),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
        /** `iso`: ISO 8601 UTC times ("2026-11-28T02:14:21.123Z"); `epoch`: milliseconds since 1970, as pino writes them. */
        time: z.enum(['iso', 'epoch']).default('iso'),
        /** `auto`: readable lines when stdout is a terminal, JSON otherwise; `json` or `pretty` always. */
        format: z.enum(['auto', 'json', 'pretty']).default('auto'),
      })
      .strict(),
  })
  .strict();

export type GatewayConfig = z.infer<typeof ConfigSchema>;
