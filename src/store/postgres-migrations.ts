import type pg from 'pg';

/**
 * Schema versions of the PostgreSQL store, applied in order; never edit a released one, add the next.
 * Version 1 is the whole schema of SQLite version 8 (the PostgreSQL store starts there, with no older data
 * to carry). Milliseconds are BIGINT; JSON is TEXT, because the audit chain hashes the exact text written
 * (JSONB would reorder keys) and the rows are read by the same mappers as SQLite's.
 * audit.seq is BIGINT, not BIGSERIAL: it is part of the hash and must have no gaps, so it is assigned under
 * the audit lock (a sequence leaves gaps when a transaction rolls back).
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    profile_id TEXT NOT NULL,
    link TEXT NOT NULL,
    region TEXT NOT NULL,
    address TEXT,
    account_id TEXT,
    flags TEXT,
    observed_relay TEXT,
    observed_at BIGINT,
    observed_source TEXT,
    voltage_v DOUBLE PRECISION,
    energy_wh DOUBLE PRECISION,
    desired_relay TEXT,
    desired_order_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  CREATE INDEX meters_account ON meters (account_id) WHERE account_id IS NOT NULL;

  CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    seq BIGSERIAL NOT NULL UNIQUE,
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    note TEXT,
    requested_by TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    priority INTEGER NOT NULL,
    urgent BOOLEAN NOT NULL,
    link TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    deadline BIGINT,
    payment_at BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    superseded_by TEXT,
    completed_at BIGINT,
    result_relay TEXT,
    plan_id TEXT,
    second_notice_at BIGINT,
    cap_day TEXT,
    escalated_at BIGINT
  );
  CREATE INDEX orders_queue ON orders (priority DESC, deadline, seq) WHERE state IN ('queued', 'held', 'escalated');
  CREATE INDEX orders_meter_state ON orders (meter_id, state);
  CREATE INDEX orders_state ON orders (state);
  CREATE INDEX orders_plan ON orders (plan_id) WHERE plan_id IS NOT NULL;
  CREATE INDEX orders_deadline ON orders (deadline) WHERE deadline IS NOT NULL AND escalated_at IS NULL AND state IN ('queued', 'held', 'in_flight');

  CREATE TABLE attempts (
    order_id TEXT NOT NULL REFERENCES orders(id),
    attempt INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    outcome TEXT,
    latency_ms BIGINT,
    observed_relay TEXT,
    command_evidence TEXT,
    read_evidence TEXT,
    detail TEXT,
    PRIMARY KEY (order_id, attempt)
  );
  CREATE INDEX attempts_ended ON attempts (ended_at);

  CREATE TABLE order_events (
    seq BIGSERIAL PRIMARY KEY,
    order_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT
  );
  CREATE INDEX order_events_order ON order_events (order_id, seq);

  CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE INDEX audit_target ON audit (target, seq);
  CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
  CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
  CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

  CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
  );
  CREATE TABLE idempotent_responses (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
  );

  CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    channel TEXT NOT NULL,
    served_at BIGINT NOT NULL,
    delivery TEXT NOT NULL,
    receipt_ref TEXT,
    recorded_by TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
  );
  CREATE INDEX notices_meter ON notices (meter_id, served_at);

  CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    note TEXT,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    window_from BIGINT NOT NULL,
    window_to BIGINT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT
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
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    regions TEXT,
    declared_by TEXT NOT NULL,
    declared_at BIGINT NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
  );

  CREATE TABLE observations (
    seq BIGSERIAL PRIMARY KEY,
    meter_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    relay TEXT NOT NULL,
    source TEXT NOT NULL,
    voltage_v DOUBLE PRECISION,
    energy_wh DOUBLE PRECISION
  );
  CREATE INDEX observations_meter ON observations (meter_id, at);

  CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    order_id TEXT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
  );
  CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE delivered_at IS NULL;
  CREATE INDEX notifications_meter ON notifications (meter_id, created_at);
  CREATE INDEX notifications_kind ON notifications (kind, created_at);

  CREATE TABLE work_orders (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    meter_id TEXT NOT NULL,
    region TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    deadline BIGINT,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    assigned_to TEXT,
    assigned_at BIGINT,
    completed_at BIGINT,
    outcome TEXT,
    note TEXT,
    updated_at BIGINT NOT NULL
  );
  CREATE INDEX work_orders_open ON work_orders (status, priority, due_at);
  CREATE INDEX work_orders_order ON work_orders (order_id);

  CREATE TABLE breakers (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    action TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    reset_at BIGINT,
    reset_by TEXT
  );
  CREATE INDEX breakers_open ON breakers (scope, key) WHERE reset_at IS NULL;

  CREATE TABLE relay_audit_runs (
    id TEXT PRIMARY KEY,
    ran_at BIGINT NOT NULL,
    meters INTEGER NOT NULL,
    exceptions TEXT NOT NULL
  );

  CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    account_id TEXT,
    meter_id TEXT,
    amount DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    posted BOOLEAN NOT NULL,
    reference TEXT,
    received_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    effects TEXT NOT NULL,
    UNIQUE (client, idempotency_key)
  );
  CREATE INDEX payments_client_time ON payments (client, received_at);
  CREATE TABLE callback_subscriptions (
    client TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  CREATE TABLE client_events (
    seq BIGSERIAL PRIMARY KEY,
    client TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
  );
  CREATE INDEX client_events_pending ON client_events (client, seq) WHERE delivered_at IS NULL;
  CREATE INDEX client_events_client ON client_events (client, seq);

  CREATE TABLE credit_events (
    seq BIGSERIAL PRIMARY KEY,
    meter_id TEXT NOT NULL,
    event TEXT NOT NULL,
    at BIGINT NOT NULL
  );
  CREATE INDEX credit_events_meter ON credit_events (meter_id, seq);
  CREATE TABLE credit_control (
    meter_id TEXT PRIMARY KEY,
    cycle_ref TEXT,
    warnings_sent TEXT NOT NULL,
    emergency_offered BOOLEAN NOT NULL,
    last_reading_at BIGINT,
    last_reading_wh DOUBLE PRECISION
  );
  `,
  // 2: leases: which instance has an order on the wire, and until when (others take it over after that).
  `
  ALTER TABLE orders ADD COLUMN lease_owner TEXT;
  ALTER TABLE orders ADD COLUMN lease_until BIGINT;
  CREATE INDEX orders_in_flight_lease ON orders (lease_until) WHERE state = 'in_flight';
  `,
  // 3: duties: work one instance at a time must do (the success-rate monitor, scheduled readings, callbacks, ...).
  `
  CREATE TABLE duties (name TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until BIGINT NOT NULL);
  `,
  // 4: every disconnect has an authority (issue 20): the path an order came in by (only credit control's own
  // orders may cut off for credit), the reference its reason needs, and a supervisor's one-meter approval. Orders
  // from before are given the origin their rows show. The gate reads an order's latest pre-disconnect notification.
  `
  ALTER TABLE orders ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
  ALTER TABLE orders ADD COLUMN reference TEXT;
  ALTER TABLE orders ADD COLUMN approved_by TEXT;
  ALTER TABLE orders ADD COLUMN approved_at BIGINT;
  UPDATE orders SET origin = 'credit_control' WHERE requested_by = 'credit-control';
  UPDATE orders SET origin = 'plan' WHERE plan_id IS NOT NULL;
  CREATE INDEX notifications_order ON notifications (order_id, created_at) WHERE order_id IS NOT NULL;
  `,
  // 5: the change feed numbered per billing client, 1, 2, 3, … with no gaps (issue 20): client_feed keyed by
  // (client, seq), each client's next number from its counter row in client_seq (not a sequence: a rolled-back
  // transaction would leave a gap). The events so far are renumbered per client in their old order; the old table
  // is locked first, so an instance of the older release cannot add an event between the copy and the drop. The
  // table has a new name so that such an instance's statements fail loudly instead of matching one row per client
  // (its UPDATE … WHERE seq = N).
  `
  LOCK TABLE client_events IN ACCESS EXCLUSIVE MODE;
  CREATE TABLE client_feed (
    client TEXT NOT NULL,
    seq BIGINT NOT NULL,
    meter_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT,
    PRIMARY KEY (client, seq)
  );
  CREATE INDEX client_feed_pending ON client_feed (client, seq) WHERE delivered_at IS NULL;
  INSERT INTO client_feed (client, seq, meter_id, order_id, kind, payload, at, attempts, next_attempt_at, delivered_at, last_error)
    SELECT client, ROW_NUMBER() OVER (PARTITION BY client ORDER BY seq), meter_id, order_id, kind, payload, at, attempts, next_attempt_at, delivered_at, last_error
    FROM client_events;
  CREATE TABLE client_seq (client TEXT PRIMARY KEY, last_seq BIGINT NOT NULL);
  INSERT INTO client_seq (client, last_seq) SELECT client, MAX(seq) FROM client_feed GROUP BY client;
  DROP TABLE client_events;
  `,
  // 6: inspection work orders with no switch order (the relay audit's, rule 17); alert episodes, claimed once per
  // meter and kind (rules 17, 20); meter swaps, which reset the consumption baseline.
  `
  ALTER TABLE work_orders ALTER COLUMN order_id DROP NOT NULL;
  ALTER TABLE work_orders ADD COLUMN kind TEXT NOT NULL DEFAULT 'switch_order';
  CREATE TABLE episodes (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    from_at BIGINT NOT NULL,
    to_at BIGINT NOT NULL,
    wh_per_hour DOUBLE PRECISION,
    message TEXT NOT NULL,
    details TEXT,
    ended_at BIGINT,
    work_order_id TEXT
  );
  CREATE UNIQUE INDEX episodes_open ON episodes (meter_id, kind) WHERE ended_at IS NULL;
  CREATE INDEX episodes_meter ON episodes (meter_id, opened_at);
  CREATE INDEX episodes_opened ON episodes (opened_at);
  CREATE TABLE meter_swaps (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    at BIGINT NOT NULL,
    old_final_wh DOUBLE PRECISION NOT NULL,
    new_first_wh DOUBLE PRECISION NOT NULL,
    new_serial TEXT,
    reference TEXT,
    recorded_by TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
  );
  CREATE INDEX meter_swaps_meter ON meter_swaps (meter_id, at);
  `,
  // Money in exact integer minor units (issue 14): as SQLite's migration of the same name says. payments.amount
  // (DOUBLE PRECISION, major units) becomes amount_minor (BIGINT, minor units), rounded half up as the ledger booked
  // a top-up; NULL beyond the ceiling. Consumption costs become whole millionths (`costMicro`), read back as the
  // same double the gateway wrote (float8 parses the JSON text correctly rounded) and rounded as the fold did.
  `
  ALTER TABLE payments ADD COLUMN amount_minor BIGINT;
  UPDATE payments SET amount_minor = (floor(amount * 100) + CASE WHEN amount * 100 - floor(amount * 100) >= 0.5 THEN 1 ELSE 0 END)::bigint
    WHERE amount > 0 AND amount * 100 < 1000000000.5;
  ALTER TABLE payments DROP COLUMN amount;
  UPDATE credit_events
    SET event = ((event::jsonb - 'cost') || jsonb_build_object('costMicro',
      (floor((event::jsonb ->> 'cost')::float8 * 1000000)
        + CASE WHEN (event::jsonb ->> 'cost')::float8 * 1000000 - floor((event::jsonb ->> 'cost')::float8 * 1000000) >= 0.5 THEN 1 ELSE 0 END)::bigint))::text
    WHERE event::jsonb ->> 'type' = 'consumption'
      AND jsonb_typeof(event::jsonb -> 'cost') = 'number'
      AND (event::jsonb ->> 'cost')::float8 >= 0
      AND (event::jsonb ->> 'cost')::float8 * 1000000 < 1000000000000000.5;
  `,
  // Clients and reserved Idempotency-Keys (issue 14): as SQLite's migration of the same content. Keys sharing a name
  // become one client whose id is that name (it was their identity); answers kept for key creation and rotation lose
  // their secret.
  `
  CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  INSERT INTO clients (id, name, created_by, created_at) SELECT name, name, 'upgrade', MIN(created_at) FROM api_keys GROUP BY name;
  ALTER TABLE api_keys ADD COLUMN client_id TEXT REFERENCES clients(id);
  UPDATE api_keys SET client_id = name;
  ALTER TABLE api_keys ALTER COLUMN client_id SET NOT NULL;
  CREATE INDEX api_keys_client ON api_keys (client_id);
  ALTER TABLE idempotent_responses ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
  UPDATE idempotent_responses SET body = (body::jsonb - 'key')::text
    WHERE jsonb_typeof(body::jsonb) = 'object' AND jsonb_typeof(body::jsonb -> 'key') = 'string'
      AND jsonb_typeof(body::jsonb -> 'role') = 'string' AND jsonb_typeof(body::jsonb -> 'createdBy') = 'string';
  `,
  // The audit chain keyed (issue 14): from the entry audit_keying names on, each link is an HMAC under a key kept
  // outside the database (older entries keep their SHA-256 links); the store writes that record, once, in this
  // migration's transaction. audit.hash and prev_hash are NOT NULL since version 1.
  `
  CREATE TABLE audit_keying (
    keyed_from BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    mac TEXT NOT NULL
  );
  CREATE UNIQUE INDEX audit_keying_once ON audit_keying ((true));
  CREATE TRIGGER audit_keying_no_change BEFORE UPDATE OR DELETE ON audit_keying FOR EACH ROW EXECUTE FUNCTION audit_append_only();
  CREATE TRIGGER audit_keying_no_truncate BEFORE TRUNCATE ON audit_keying FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
  `,
  // Per-meter DLMS keys and invocation counters (issue 15 items 3 and 4), as in SQLite's migration: nothing here is a
  // key in clear (src/keys/key-envelope.ts); every counter value below reserved_until has been handed out.
  `
  CREATE TABLE meter_key_sets (
    meter_id TEXT NOT NULL,
    key_set_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('current', 'pending', 'retired')),
    master_key_id TEXT NOT NULL,
    wrapped_data_key TEXT NOT NULL,
    sealed_keys TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    retired_at BIGINT,
    PRIMARY KEY (meter_id, key_set_id)
  );
  CREATE UNIQUE INDEX meter_key_sets_one_current ON meter_key_sets (meter_id) WHERE state = 'current';
  CREATE UNIQUE INDEX meter_key_sets_one_pending ON meter_key_sets (meter_id) WHERE state = 'pending';
  CREATE TABLE invocation_counters (
    meter_id TEXT NOT NULL,
    key_set_id TEXT NOT NULL,
    reserved_until BIGINT NOT NULL,
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
  ALTER TABLE notifications ADD COLUMN acknowledged_at BIGINT;
  ALTER TABLE notifications ADD COLUMN acknowledged_by TEXT;
  ALTER TABLE notifications ADD COLUMN cleared_at BIGINT;
  ALTER TABLE notifications ADD COLUMN cleared_by TEXT;
  ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
  `,
  // Orders over time for the overview's charts (issue 17, src/store/order-series.ts): bucketed counts of created,
  // completed and escalated orders are range scans of these; orders_completed covers its statements (no table reads).
  `
  CREATE INDEX orders_created ON orders (created_at);
  CREATE INDEX orders_completed ON orders (completed_at, state, escalated_at, created_at);
  CREATE INDEX orders_escalated ON orders (escalated_at, state);
  `,
  // Fewer index entries written per state change (issue 19; the SQLite store's migration 24 does the same). Every
  // state change of an order is a non-HOT update (`state` is indexed), which adds the new row version to every index
  // of the table whose predicate it meets: an index only some statements' rows need now holds only those rows.
  // - "is an order of this meter on the wire" (the due query, leasing) is a partial index of the in-flight orders;
  //   the meter's other lookups walk orders_meter_seq (a meter's orders, in order);
  // - the charts' indexes hold finished (completed_at) and escalated orders only (their statements ask a range of
  //   those columns, which implies NOT NULL);
  // - the deadline index's rows are the unfinished orders (completed_at IS NULL: the statement says so too);
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
];

/** The migration that keys the audit chain (its transaction writes the keying record, once). */
export const POSTGRES_AUDIT_KEYED = POSTGRES_MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE audit_keying'));

/** A schema name safe to put in a search_path and in DDL without quoting tricks. */
export function checkSchemaName(schema: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) throw new Error(`PostgresStore: schema name "${schema}" must be a plain identifier (letters, digits, underscore)`);
  return schema;
}

/**
 * Bring the schema up to the latest version, in one transaction, under an advisory lock keyed by the schema:
 * gateway instances starting together wait for each other and the later ones find nothing left to do.
 * `afterMigration(index)` runs after each migration's SQL, in the same transaction (one-time data steps).
 * Returns the versions this call applied.
 */
export async function migratePostgres(client: pg.ClientBase, schema: string | undefined, afterMigration?: (index: number) => Promise<void>): Promise<number[]> {
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`meterline:migrate:${schema ?? 'public'}`]);
    if (schema !== undefined) {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${checkSchemaName(schema)}`);
      await client.query(`SET LOCAL search_path TO ${schema}`);
    }
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const { rows } = await client.query<{ v: number }>('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations');
    for (let v = rows[0]!.v; v < POSTGRES_MIGRATIONS.length; v++) {
      await client.query(POSTGRES_MIGRATIONS[v]!);
      await afterMigration?.(v);
      await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [v + 1, Date.now()]);
      applied.push(v + 1);
    }
    await client.query('COMMIT');
    return applied;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
