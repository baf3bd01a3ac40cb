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
];
