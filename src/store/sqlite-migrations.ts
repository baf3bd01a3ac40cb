/** Schema versions of the SQLite store, applied in order; never edit a released one, add the next. */
export const SQLITE_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    profile_id TEXT NOT NULL,
    link TEXT NOT NULL,
    region TEXT NOT NULL,
    observed_relay TEXT,
    observed_at INTEGER,
    observed_source TEXT,
    voltage_v REAL,
    energy_wh REAL,
    desired_relay TEXT,
    desired_order_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    note TEXT,
    requested_by TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    priority INTEGER NOT NULL,
    urgent INTEGER NOT NULL,
    link TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    deadline INTEGER,
    payment_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    superseded_by TEXT,
    completed_at INTEGER,
    result_relay TEXT
  );
  CREATE INDEX orders_queue ON orders (priority DESC, deadline, seq) WHERE state = 'queued';
  CREATE INDEX orders_meter_state ON orders (meter_id, state);
  CREATE INDEX orders_state ON orders (state);
  CREATE TABLE attempts (
    order_id TEXT NOT NULL REFERENCES orders(id),
    attempt INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    outcome TEXT,
    latency_ms INTEGER,
    observed_relay TEXT,
    command_evidence TEXT,
    read_evidence TEXT,
    detail TEXT,
    PRIMARY KEY (order_id, attempt)
  );
  CREATE TABLE order_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT
  );
  CREATE INDEX order_events_order ON order_events (order_id, seq);
  CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT
  );
  CREATE INDEX audit_target ON audit (target, seq);
  CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
  );
  `,
  // 2: where a meter sits on its link (Modbus unit id, DLMS HDLC address); null for MQTT meters.
  `ALTER TABLE meters ADD COLUMN address TEXT;`,
  // 3: the disconnect rules' facts (flags, notices, plans, caps, weather), keys, a hash-chained audit,
  // observation history and the notification outbox.
  `
  ALTER TABLE meters ADD COLUMN flags TEXT;
  ALTER TABLE orders ADD COLUMN plan_id TEXT;
  ALTER TABLE orders ADD COLUMN second_notice_at INTEGER;
  ALTER TABLE orders ADD COLUMN cap_day TEXT;
  DROP INDEX orders_queue;
  CREATE INDEX orders_queue ON orders (priority DESC, deadline, seq) WHERE state IN ('queued', 'held');
  CREATE INDEX orders_plan ON orders (plan_id) WHERE plan_id IS NOT NULL;
  CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    channel TEXT NOT NULL,
    served_at INTEGER NOT NULL,
    delivery TEXT NOT NULL,
    receipt_ref TEXT,
    recorded_by TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
  );
  CREATE INDEX notices_meter ON notices (meter_id, served_at);
  CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    note TEXT,
    author TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    window_from INTEGER NOT NULL,
    window_to INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at INTEGER
  );
  CREATE TABLE plan_meters (
    plan_id TEXT NOT NULL REFERENCES plans(id),
    position INTEGER NOT NULL,
    meter_id TEXT NOT NULL,
    order_id TEXT,
    PRIMARY KEY (plan_id, position)
  );
  CREATE TABLE cap_usage (
    day TEXT NOT NULL,
    region TEXT NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (day, region)
  );
  CREATE TABLE weather_periods (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    regions TEXT,
    declared_by TEXT NOT NULL,
    declared_at INTEGER NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE TABLE observations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    meter_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    relay TEXT NOT NULL,
    source TEXT NOT NULL,
    voltage_v REAL,
    energy_wh REAL
  );
  CREATE INDEX observations_meter ON observations (meter_id, at);
  CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    order_id TEXT,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT
  );
  CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE delivered_at IS NULL;
  CREATE INDEX notifications_meter ON notifications (meter_id, created_at);
  ALTER TABLE audit ADD COLUMN prev_hash TEXT;
  ALTER TABLE audit ADD COLUMN hash TEXT;
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    WHEN OLD.hash IS NOT NULL BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  `,
  // 4: replayable answers to writes other than switch orders (flags, notices, plans, keys).
  `
  CREATE TABLE idempotent_responses (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
  );
  `,
  // 5: field work orders, success-rate circuit breakers.
  `
  ALTER TABLE orders ADD COLUMN escalated_at INTEGER;
  DROP INDEX orders_queue;
  CREATE INDEX orders_queue ON orders (priority DESC, deadline, seq) WHERE state IN ('queued', 'held', 'escalated');
  CREATE INDEX orders_deadline ON orders (deadline) WHERE deadline IS NOT NULL AND escalated_at IS NULL AND state IN ('queued', 'held', 'in_flight');
  CREATE INDEX attempts_ended ON attempts (ended_at);
  CREATE TABLE work_orders (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    meter_id TEXT NOT NULL,
    region TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    deadline INTEGER,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    assigned_to TEXT,
    assigned_at INTEGER,
    completed_at INTEGER,
    outcome TEXT,
    note TEXT,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX work_orders_open ON work_orders (status, priority, due_at);
  CREATE INDEX work_orders_order ON work_orders (order_id);
  CREATE TABLE breakers (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    action TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reset_at INTEGER,
    reset_by TEXT
  );
  CREATE INDEX breakers_open ON breakers (scope, key) WHERE reset_at IS NULL;
  `,
  // 6: the daily relay audit's runs (DOMAIN.md rule 17).
  `
  CREATE TABLE relay_audit_runs (
    id TEXT PRIMARY KEY,
    ran_at INTEGER NOT NULL,
    meters INTEGER NOT NULL,
    exceptions TEXT NOT NULL
  );
  CREATE INDEX notifications_kind ON notifications (kind, created_at);
  `,
  // 7: billing integration: accounts, payments, callback subscriptions and the per-client change feed.
  `
  ALTER TABLE meters ADD COLUMN account_id TEXT;
  CREATE INDEX meters_account ON meters (account_id) WHERE account_id IS NOT NULL;
  CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    account_id TEXT,
    meter_id TEXT,
    amount REAL NOT NULL,
    kind TEXT NOT NULL,
    posted INTEGER NOT NULL,
    reference TEXT,
    received_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    effects TEXT NOT NULL,
    UNIQUE (client, idempotency_key)
  );
  CREATE INDEX payments_client_time ON payments (client, received_at);
  CREATE TABLE callback_subscriptions (
    client TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE client_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT
  );
  CREATE INDEX client_events_pending ON client_events (client, seq) WHERE delivered_at IS NULL;
  CREATE INDEX client_events_client ON client_events (client, seq);
  `,
  // 8: prepayment credit: the ledger's events and credit control's memory per meter.
  `
  CREATE TABLE credit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    meter_id TEXT NOT NULL,
    event TEXT NOT NULL,
    at INTEGER NOT NULL
  );
  CREATE INDEX credit_events_meter ON credit_events (meter_id, seq);
  CREATE TABLE credit_control (
    meter_id TEXT PRIMARY KEY,
    cycle_ref TEXT,
    warnings_sent TEXT NOT NULL,
    emergency_offered INTEGER NOT NULL,
    last_reading_at INTEGER,
    last_reading_wh REAL
  );
  `,
  // 9: leases: which instance has an order on the wire, and until when (others take it over after that).
  `
  ALTER TABLE orders ADD COLUMN lease_owner TEXT;
  ALTER TABLE orders ADD COLUMN lease_until INTEGER;
  CREATE INDEX orders_in_flight_lease ON orders (lease_until) WHERE state = 'in_flight';
  `,
  // 10: duties: work one instance at a time must do (the success-rate monitor, scheduled readings, callbacks, ...).
  `
  CREATE TABLE duties (name TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until INTEGER NOT NULL);
  `,
  // 11: the due-orders query walks this index in its own order (deadline IS NULL included) instead of sorting every
  // queued order on each call (40-65 ms per call with 60,000 queued; 0.1 ms now).
  `
  DROP INDEX orders_queue;
  CREATE INDEX orders_queue ON orders (priority DESC, deadline IS NULL, deadline, seq) WHERE state IN ('queued', 'held', 'escalated');
  `,
  // 12: the due-orders query's filters (link, due times, meter) carried in the queue index, so that walking past
  // orders of full or excluded links reads index entries only, not each order's row.
  `
  DROP INDEX orders_queue;
  CREATE INDEX orders_queue ON orders (priority DESC, deadline IS NULL, deadline, seq, link, next_attempt_at, not_before, meter_id) WHERE state IN ('queued', 'held', 'escalated');
  `,
  // 13: every disconnect has an authority (issue 20): the path an order came in by (only credit control's own
  // orders may cut off for credit), the reference its reason needs, and a supervisor's one-meter approval. Orders
  // from before are given the origin their rows show. The gate reads an order's latest pre-disconnect notification.
  `
  ALTER TABLE orders ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
  ALTER TABLE orders ADD COLUMN reference TEXT;
  ALTER TABLE orders ADD COLUMN approved_by TEXT;
  ALTER TABLE orders ADD COLUMN approved_at INTEGER;
  UPDATE orders SET origin = 'credit_control' WHERE requested_by = 'credit-control';
  UPDATE orders SET origin = 'plan' WHERE plan_id IS NOT NULL;
  CREATE INDEX notifications_order ON notifications (order_id, created_at) WHERE order_id IS NOT NULL;
  `,
  // 14: the change feed numbered per billing client, 1, 2, 3, … with no gaps (issue 20): client_feed keyed by
  // (client, seq), each client's next number from its counter row in client_seq. The events so far are renumbered
  // per client in their old order. The table has a new name so that a statement of an older release fails loudly
  // instead of matching one row per client (its UPDATE … WHERE seq = N).
  `
  CREATE TABLE client_feed (
    client TEXT NOT NULL,
    seq INTEGER NOT NULL,
    meter_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT,
    PRIMARY KEY (client, seq)
  );
  CREATE INDEX client_feed_pending ON client_feed (client, seq) WHERE delivered_at IS NULL;
  INSERT INTO client_feed (client, seq, meter_id, order_id, kind, payload, at, attempts, next_attempt_at, delivered_at, last_error)
    SELECT client, ROW_NUMBER() OVER (PARTITION BY client ORDER BY seq), meter_id, order_id, kind, payload, at, attempts, next_attempt_at, delivered_at, last_error
    FROM client_events;
  CREATE TABLE client_seq (client TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
  INSERT INTO client_seq (client, last_seq) SELECT client, MAX(seq) FROM client_feed GROUP BY client;
  DROP TABLE client_events;
  `,
  // 15: inspection work orders with no switch order (the relay audit's, rule 17): order_id nullable and a kind, which
  // SQLite can only do by rebuilding the table (nothing references work_orders); alert episodes, claimed once per
  // meter and kind (rules 17, 20); meter swaps, which reset the consumption baseline.
  `
  CREATE TABLE work_orders_v13 (
    id TEXT PRIMARY KEY,
    order_id TEXT REFERENCES orders(id),
    kind TEXT NOT NULL DEFAULT 'switch_order',
    meter_id TEXT NOT NULL,
    region TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    deadline INTEGER,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    assigned_to TEXT,
    assigned_at INTEGER,
    completed_at INTEGER,
    outcome TEXT,
    note TEXT,
    updated_at INTEGER NOT NULL
  );
  INSERT INTO work_orders_v13 (id, order_id, kind, meter_id, region, action, reason, raised_at, due_at, deadline, priority, status, assigned_to, assigned_at, completed_at, outcome, note, updated_at)
    SELECT id, order_id, 'switch_order', meter_id, region, action, reason, raised_at, due_at, deadline, priority, status, assigned_to, assigned_at, completed_at, outcome, note, updated_at FROM work_orders;
  DROP TABLE work_orders;
  ALTER TABLE work_orders_v13 RENAME TO work_orders;
  CREATE INDEX work_orders_open ON work_orders (status, priority, due_at);
  CREATE INDEX work_orders_order ON work_orders (order_id);
  CREATE TABLE episodes (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    from_at INTEGER NOT NULL,
    to_at INTEGER NOT NULL,
    wh_per_hour REAL,
    message TEXT NOT NULL,
    details TEXT,
    ended_at INTEGER,
    work_order_id TEXT
  );
  CREATE UNIQUE INDEX episodes_open ON episodes (meter_id, kind) WHERE ended_at IS NULL;
  CREATE INDEX episodes_meter ON episodes (meter_id, opened_at);
  CREATE INDEX episodes_opened ON episodes (opened_at);
  CREATE TABLE meter_swaps (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    at INTEGER NOT NULL,
    old_final_wh REAL NOT NULL,
    new_first_wh REAL NOT NULL,
    new_serial TEXT,
    reference TEXT,
    recorded_by TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
  );
  CREATE INDEX meter_swaps_meter ON meter_swaps (meter_id, at);
  `,
  // Money in exact integer minor units (issue 14). payments.amount (REAL, major units) becomes amount_minor (INTEGER,
  // minor units): amount × 100 rounded half up, as the ledger already booked a top-up (Math.round(amount × 100)),
  // so payments and ledger agree; every amount of at most two decimals converts exactly. A row beyond the ceiling
  // (10,000,000.00, money.ts) has no amount the gateway can hold: amount_minor stays NULL (the audit log keeps
  // what was reported). Consumption costs in the ledger, float minor units (`cost`), become whole millionths of a
  // minor unit (`costMicro`), rounded half up as the ledger's fold did (Math.round(cost × 10^6)); a cost beyond the
  // ceiling is left as it was and the fold ignores it. floor(x) + (x - floor(x) >= 0.5) is Math.round(x) for x ≥ 0.
  `
  ALTER TABLE payments ADD COLUMN amount_minor INTEGER;
  UPDATE payments SET amount_minor = CAST(amount * 100 AS INTEGER) + (amount * 100 - CAST(amount * 100 AS INTEGER) >= 0.5)
    WHERE amount > 0 AND amount * 100 < 1000000000.5;
  ALTER TABLE payments DROP COLUMN amount;
  UPDATE credit_events
    SET event = json_set(json_remove(event, '$.cost'), '$.costMicro',
      CAST(json_extract(event, '$.cost') * 1000000 AS INTEGER)
        + (json_extract(event, '$.cost') * 1000000 - CAST(json_extract(event, '$.cost') * 1000000 AS INTEGER) >= 0.5))
    WHERE json_extract(event, '$.type') = 'consumption'
      AND json_type(event, '$.cost') IN ('integer', 'real')
      AND json_extract(event, '$.cost') >= 0
      AND json_extract(event, '$.cost') * 1000000 < 1000000000000000.5;
  `,
  // Clients and reserved Idempotency-Keys (issue 14, DESIGN.md §8). A client (a billing system, a person) is an id
  // and owns keys; its name is only a label. Keys made before had only a name, which was their identity: keys sharing a
  // name become one client whose id is that name, so the rows written under it (payments, callback, change feed,
  // plans, orders, Idempotency-Keys) stay its own. New clients get generated `cli_` ids. An Idempotency-Key is now
  // reserved (state 'pending') before its write acts. Answers kept for key creation and rotation lose their secret.
  `
  CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  INSERT INTO clients (id, name, created_by, created_at) SELECT name, name, 'upgrade', MIN(created_at) FROM api_keys GROUP BY name;
  ALTER TABLE api_keys ADD COLUMN client_id TEXT REFERENCES clients(id);
  UPDATE api_keys SET client_id = name;
  CREATE INDEX api_keys_client ON api_keys (client_id);
  ALTER TABLE idempotent_responses ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
  UPDATE idempotent_responses SET body = json_remove(body, '$.key')
    WHERE json_type(body) = 'object' AND json_type(body, '$.key') = 'text' AND json_type(body, '$.role') = 'text' AND json_type(body, '$.createdBy') = 'text';
  `,
  // The audit chain keyed (issue 14): from the entry audit_keying names on, each link is an HMAC under a key kept
  // outside the database (older entries keep their SHA-256 links); the store writes that record, once, in this
  // migration's transaction. An entry must carry its link when inserted, and no entry is updated any more (the
  // exception for unlinked rows served version 3's one-time linking; a row without a link is now tampering).
  `
  CREATE TABLE audit_keying (
    keyed_from INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    mac TEXT NOT NULL
  );
  CREATE TRIGGER audit_keying_once BEFORE INSERT ON audit_keying
    WHEN (SELECT COUNT(*) FROM audit_keying) > 0 BEGIN SELECT RAISE(ABORT, 'the audit chain is keyed once'); END;
  CREATE TRIGGER audit_keying_no_update BEFORE UPDATE ON audit_keying BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER audit_keying_no_delete BEFORE DELETE ON audit_keying BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  DROP TRIGGER audit_no_update;
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER audit_link_required BEFORE INSERT ON audit
    WHEN NEW.hash IS NULL OR NEW.prev_hash IS NULL BEGIN SELECT RAISE(ABORT, 'an audit entry needs its chain link: only the gateway writes the audit log'); END;
  `,
  // Per-meter DLMS keys and invocation counters (issue 15 items 3 and 4). A key set's material is sealed under a data
  // key, itself sealed under the key master kept outside the database (src/keys/key-envelope.ts): nothing here is a
  // key in clear. A meter has at most one current and one pending key set. A counter row says which values of a
  // meter's key set have been handed out: every value below reserved_until (reserved ahead, in blocks).
  `
  CREATE TABLE meter_key_sets (
    meter_id TEXT NOT NULL,
    key_set_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('current', 'pending', 'retired')),
    master_key_id TEXT NOT NULL,
    wrapped_data_key TEXT NOT NULL,
    sealed_keys TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    retired_at INTEGER,
    PRIMARY KEY (meter_id, key_set_id)
  );
  CREATE UNIQUE INDEX meter_key_sets_one_current ON meter_key_sets (meter_id) WHERE state = 'current';
  CREATE UNIQUE INDEX meter_key_sets_one_pending ON meter_key_sets (meter_id) WHERE state = 'pending';
  CREATE TABLE invocation_counters (
    meter_id TEXT NOT NULL,
    key_set_id TEXT NOT NULL,
    reserved_until INTEGER NOT NULL,
    PRIMARY KEY (meter_id, key_set_id)
  );
  `,
  // The meter's system title beside its sealed key set (issue 15 item 6: a pushed ciphered notification names its
  // sender by system title). Not a secret: the meter sends it in clear in every ciphered APDU.
  `
  ALTER TABLE meter_key_sets ADD COLUMN system_title TEXT;
  CREATE INDEX meter_key_sets_by_system_title ON meter_key_sets (system_title) WHERE system_title IS NOT NULL;
  `,
  // Load limiting as an order (issue 16 item 5, DOMAIN.md rule 10): a limit order's demand limit in watts, NULL for a
  // removal and for every relay order; a plan's limit, NULL for a disconnect plan.
  `
  ALTER TABLE orders ADD COLUMN limit_w INTEGER;
  ALTER TABLE plans ADD COLUMN limit_w INTEGER;
  `,
  // Order lists at fleet scale (issue 17): a page, newest first, of one meter's orders or of orders in a state walks
  // these in seq order and stops at the page's end; the unfiltered list walks the seq column's own unique index.
  // (state, seq) serves every query orders_state served.
  `
  CREATE INDEX orders_meter_seq ON orders (meter_id, seq);
  CREATE INDEX orders_state_seq ON orders (state, seq);
  DROP INDEX orders_state;
  `,
  // Alerts a person acknowledges and clears (issue 17): alerts are the outbox's `alert.*` records; who and when.
  // And when an API key was last used (to the minute), for the admins' keys page.
  `
  ALTER TABLE notifications ADD COLUMN acknowledged_at INTEGER;
  ALTER TABLE notifications ADD COLUMN acknowledged_by TEXT;
  ALTER TABLE notifications ADD COLUMN cleared_at INTEGER;
  ALTER TABLE notifications ADD COLUMN cleared_by TEXT;
  ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
  `,
  // Orders over time for the overview's charts (issue 17, src/store/order-series.ts): bucketed counts of created,
  // completed and escalated orders are range scans of these; orders_completed covers its statements (no table reads).
  `
  CREATE INDEX orders_created ON orders (created_at);
  CREATE INDEX orders_completed ON orders (completed_at, state, escalated_at, created_at);
  CREATE INDEX orders_escalated ON orders (escalated_at, state);
  `,
  // Fewer b-trees rewritten per state change (issue 19): an order's row is written three times on its way to verified
  // (admitted, leased, verdict), and each write rewrote every index holding `state`. An index that only its
  // queries' rows need holds only those rows now, so that an order's in-flight churn passes it by:
  // - "is an order of this meter on the wire" (the due query, leasing) is a partial index of the in-flight orders;
  //   the meter's other lookups walk orders_meter_seq (a meter's orders, in order), as the open-orders one did;
  // - the charts' indexes hold finished (completed_at) and escalated orders only (their statements ask a range of
  //   those columns, which implies NOT NULL);
  // - the deadline index's rows are the unfinished orders (completed_at IS NULL: the statement says so too), not
  //   those in three states, so leasing an order no longer moves its entry;
  // - orders_in_flight_lease goes: the orphans statement walks orders_state_seq (state = 'in_flight', by seq).
  `
  DROP INDEX orders_meter_state;
  CREATE INDEX orders_meter_in_flight ON orders (meter_id) WHERE state = 'in_flight';
  DROP INDEX orders_in_flight_lease;
  DROP INDEX orders_completed;
  CREATE INDEX orders_completed ON orders (completed_at, state, escalated_at, created_at) WHERE completed_at IS NOT NULL;
  DROP INDEX orders_escalated;
  CREATE INDEX orders_escalated ON orders (escalated_at, state) WHERE escalated_at IS NOT NULL;
  DROP INDEX orders_deadline;
  CREATE INDEX orders_deadline ON orders (deadline) WHERE deadline IS NOT NULL AND escalated_at IS NULL AND completed_at IS NULL;
  `,
  // The success-rate statements read index entries only (issue 19: they run every 10 s over the windows' attempts
  // and orders, 100,000 an hour at fleet rate, and each table read per entry cost them most of their time). An
  // attempt's entry in attempts_ended is written when it ends (the in-flight ones, ended_at NULL, are no statement's
  // rows), so beginning an attempt no longer touches it; the finished and escalated indexes carry the meter and action.
  `
  DROP INDEX attempts_ended;
  CREATE INDEX attempts_ended ON attempts (ended_at, outcome, attempt, order_id) WHERE ended_at IS NOT NULL;
  DROP INDEX orders_completed;
  CREATE INDEX orders_completed ON orders (completed_at, state, escalated_at, created_at, meter_id, action) WHERE completed_at IS NOT NULL;
  DROP INDEX orders_escalated;
  CREATE INDEX orders_escalated ON orders (escalated_at, state, meter_id, action) WHERE escalated_at IS NOT NULL;
  `,
  // A client's next feed number is its feed's last plus one (sqlite-billing.ts: the file has one writer, and feed
  // events are never deleted), so the per-client counter row, an upsert per event (issue 19), goes. Its last_seq
  // was always its client's MAX(seq) in client_feed (both written in one transaction).
  `
  DROP TABLE client_seq;
  `,
  // The consumption check after each reading (consumption-watch.ts: a meter's last readings with an energy register,
  // newest first) reads index entries only (issue 19): the meter's index carries energy_wh, so the statement neither
  // reads each reading's row nor skips those without a register by reading them. Still one index per observation
  // written, and the meter's other reads (its history, newest first) walk it as before.
  `
  DROP INDEX observations_meter;
  CREATE INDEX observations_meter ON observations (meter_id, at, energy_wh);
  `,
];

/** The migration that added the chain's columns (its transaction links the entries written before, once). */
export const SQLITE_AUDIT_LINKED = SQLITE_MIGRATIONS.findIndex((m) => m.includes('ALTER TABLE audit ADD COLUMN hash'));
/** The migration that keys the chain (its transaction writes the keying record, once). */
export const SQLITE_AUDIT_KEYED = SQLITE_MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE audit_keying'));
