import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { startGateway } from '../../src/gateway.js';
import { AuditAnchors, readAuditAnchors } from '../../src/integrations/audit-anchors.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { FakeClock } from '../harness/fake-clock.js';

/** A pino logger whose lines the test reads back. */
function memoryLogger(): { logger: pino.Logger; lines: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines: () => text };
}

describe('audit anchors', () => {
  it('an anchor (entries, head, key id) goes to the file as one JSON line and to the log; one at start, one at stop; they verify the log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-anchor-'));
    const store = new SqliteStore(join(dir, 'gw.db'));
    await store.migrate();
    const clock = new FakeClock(Date.parse('2026-11-24T10:00:00Z'));
    const { logger, lines } = memoryLogger();
    const file = join(dir, 'anchors.jsonl');
    const anchors = new AuditAnchors({ head: () => store.auditHead(), file, logger, errors: logger, everyMs: 0, instance: 'gw-a', clock });
    await anchors.start();
    await store.appendAudit({ at: clock.now(), actor: 'ops', action: 'test', target: 'M-1', details: null });
    clock.advance(60_000);
    await anchors.stop();

    const written = readAuditAnchors(file);
    const { keyId } = await store.auditHead();
    expect(written).toMatchObject([
      { anchor: 'meterline-audit', at: '2026-11-24T10:00:00.000Z', instance: 'gw-a', entries: 0, keyId },
      { at: '2026-11-24T10:01:00.000Z', entries: 1, head: (await store.auditHead()).head, keyId },
    ]);
    const logged = lines().trim().split('\n').map((l) => JSON.parse(l) as { msg: string; auditAnchor: unknown });
    expect(logged.map((l) => [l.msg, l.auditAnchor])).toEqual(written.map((a) => ['audit anchor', a]));
    expect(await store.verifyAudit({ anchors: written })).toMatchObject({ ok: true, entries: 1, anchorsChecked: 2 });
    await store.close();
  });

  it('tells the age of the newest anchor (meterline_audit_anchor_age_seconds); none when anchoring goes nowhere', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-anchor-'));
    const store = new SqliteStore(join(dir, 'gw.db'));
    await store.migrate();
    const clock = new FakeClock(Date.parse('2026-11-24T10:00:00Z'));
    const quiet = pino({ level: 'silent' });
    const anchors = new AuditAnchors({ head: () => store.auditHead(), file: join(dir, 'anchors.jsonl'), logger: null, errors: quiet, everyMs: 0, instance: 'gw-a', clock });
    expect(anchors.ageSeconds()).toBeNull(); // none written yet
    await anchors.start();
    clock.advance(90_000);
    expect(anchors.ageSeconds()).toBe(90);
    await anchors.anchor();
    expect(anchors.ageSeconds()).toBe(0);
    const off = new AuditAnchors({ head: () => store.auditHead(), file: null, logger: null, errors: quiet, everyMs: 0, instance: 'gw-a', clock });
    await off.start();
    expect(off.enabled).toBe(false);
    expect(off.ageSeconds()).toBeNull();
    await store.close();
  });

  it('a line that is not an anchor is refused, by its number', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ml-anchor-')), 'anchors.jsonl');
    writeFileSync(file, `${JSON.stringify({ anchor: 'meterline-audit', at: 'x', instance: 'a', entries: 1, head: 'f'.repeat(64), keyId: '0'.repeat(16) })}\n\n{"entries": 3}\n`);
    expect(() => readAuditAnchors(file)).toThrow(/line 3 is not an audit anchor/);
    writeFileSync(file, 'nonsense\n');
    expect(() => readAuditAnchors(file)).toThrow(/line 1 is not JSON/);
  });

  it('the gateway logs the key id and where the key was made, and its anchors; never the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-anchor-gw-'));
    const base = loadConfig({});
    const config = ConfigSchema.parse({
      ...base,
      api: { ...base.api, port: 0 },
      store: { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db') }, postgres: null },
      fleet: { seed: null },
      simulator: { ...base.simulator, inProcess: false },
      demo: { reconnectEveryMs: 0 },
      readings: { ...base.readings, schedules: [] },
    });
    const { logger, lines } = memoryLogger();
    const gateway = await startGateway(config, { logger });
    await gateway.store.appendAudit({ at: Date.now(), actor: 'ops', action: 'test', target: 'M-1', details: { a: 1 } });
    await gateway.stop();
    const key = readFileSync(join(dir, 'audit.key'), 'utf8').trim();
    const { keyId } = readAuditAnchors(join(dir, 'gw.db.audit-anchors.jsonl'))[0]!;
    const log = lines();
    expect(log).toContain('audit key made');
    expect(log).toContain(join(dir, 'audit.key'));
    expect(log).toContain(keyId);
    expect(log.match(/"msg":"audit anchor"/g)).toHaveLength(2); // at start and at stop
    expect(log).not.toContain(key);
  });
});
