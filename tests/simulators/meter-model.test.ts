import { describe, expect, it } from 'vitest';
import { COMMAND_LOG_LIMIT, SimulatedMeter, type Scheduler, type SimulatedMeterOptions } from '../../simulators/meter-model.js';

/** A hand-driven clock and scheduler: time moves only when the test says so. */
function fakeTime(start = 1_700_000_000_000) {
  let now = start;
  const timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  const schedule: Scheduler = (fn, ms) => {
    const t = { at: now + ms, fn, live: true };
    timers.push(t);
    return () => {
      t.live = false;
    };
  };
  return {
    now: () => now,
    schedule,
    advance(ms: number) {
      const until = now + ms;
      for (;;) {
        const due = timers.filter((t) => t.live && t.at <= until).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        now = due.at;
        due.live = false;
        due.fn();
      }
      now = until;
    },
  };
}

function meter(opts: Partial<SimulatedMeterOptions> = {}) {
  const clock = fakeTime();
  const m = new SimulatedMeter({
    id: 'M1',
    remoteReconnect: 'closes',
    now: clock.now,
    schedule: clock.schedule,
    loadW: 1000,
    ...opts,
  });
  return { m, clock };
}

let n = 0;
const cmd = (extra: { orderId?: string; exp?: number } = {}) => ({ cid: `c${++n}`, ...extra });

describe('SimulatedMeter', () => {
  it('advances energy only while connected', () => {
    const { m, clock } = meter({ initialEnergyWh: 100 });
    expect(m.energyWh).toBe(100);
    clock.advance(3_600_000); // 1 h at 1 kW
    expect(m.energyWh).toBe(1100);
    m.handle('disconnect', clock.now(), cmd());
    clock.advance(3_600_000);
    expect(m.energyWh).toBe(1100);
    m.handle('reconnect', clock.now(), cmd());
    clock.advance(1_800_000);
    expect(m.energyWh).toBe(1600);
  });

  it('reports ~230 V, and 0 V with no energy flow on a supply fault', () => {
    const { m, clock } = meter();
    expect(Math.abs(m.voltageV - 230)).toBeLessThanOrEqual(2);
    m.setSupplyFault(true);
    expect(m.voltageV).toBe(0);
    clock.advance(3_600_000);
    expect(m.energyWh).toBe(0);
    const r = m.handle('read', clock.now(), cmd());
    expect(r).toMatchObject({ result: 'ok', relay: 'connected', voltageV: 0 });
  });

  it("disconnect opens the relay; reconnect closes it on a 'closes' meter", () => {
    const { m, clock } = meter();
    expect(m.handle('disconnect', clock.now(), cmd())).toMatchObject({ result: 'ok', relay: 'disconnected', garbled: false });
    expect(m.relay).toBe('disconnected');
    expect(m.handle('reconnect', clock.now(), cmd())).toMatchObject({ result: 'ok', relay: 'connected' });
  });

  it("reconnect arms an 'arms' meter; the button closes it and emits a change; disconnect works from armed", () => {
    const { m, clock } = meter({ remoteReconnect: 'arms', initialRelay: 'disconnected' });
    const changes: string[] = [];
    m.onChange((mm, prev, cause) => changes.push(`${prev}->${mm.relay}:${cause}`));
    expect(m.handle('reconnect', clock.now(), cmd())?.relay).toBe('armed');
    expect(changes).toEqual([]); // remote commands are not "on its own"
    expect(m.pressButton()).toBe(true);
    expect(m.relay).toBe('connected');
    expect(changes).toEqual(['armed->connected:button']);
    expect(m.pressButton()).toBe(false);
    m.setRelay('armed');
    expect(m.handle('disconnect', clock.now(), cmd())?.relay).toBe('disconnected');
  });

  it('the simulated customer presses the button autoPressAfterMs after arming', () => {
    const { m, clock } = meter({ remoteReconnect: 'arms', initialRelay: 'disconnected', faults: { autoPressAfterMs: 5000 } });
    let changed = 0;
    m.onChange(() => changed++);
    m.handle('reconnect', clock.now(), cmd());
    clock.advance(4999);
    expect(m.relay).toBe('armed');
    clock.advance(1);
    expect(m.relay).toBe('connected');
    expect(changed).toBe(1);
    // Disarming before the press cancels it.
    m.handle('disconnect', clock.now(), cmd());
    m.handle('reconnect', clock.now(), cmd());
    m.handle('disconnect', clock.now(), cmd());
    clock.advance(10_000);
    expect(m.relay).toBe('disconnected');
  });

  it('ignores expired commands entirely but logs them', () => {
    const { m, clock } = meter();
    const r = m.handle('disconnect', clock.now(), cmd({ exp: clock.now() - 1, orderId: 'o1' }));
    expect(r).toBeUndefined();
    expect(m.relay).toBe('connected');
    expect(m.received.at(-1)).toMatchObject({ op: 'disconnect', orderId: 'o1', fate: 'expired' });
    expect(m.handle('read', clock.now(), cmd({ exp: clock.now() - 1 }))).toBeUndefined();
    expect(m.handle('disconnect', clock.now(), cmd({ exp: clock.now() }))?.relay).toBe('disconnected');
  });

  it('logs and counts every received command, reads included', () => {
    const { m, clock } = meter();
    m.handle('read', clock.now(), { cid: 'a', orderId: 'o9' });
    clock.advance(10);
    m.handle('disconnect', clock.now(), { cid: 'b', orderId: 'o9' });
    expect(m.received).toEqual([
      { at: clock.now() - 10, op: 'read', cid: 'a', orderId: 'o9', fate: 'executed' },
      { at: clock.now(), op: 'disconnect', cid: 'b', orderId: 'o9', fate: 'executed' },
    ]);
    expect(m.counters.received).toBe(2);
  });

  it('keeps the latest COMMAND_LOG_LIMIT commands in its log, so a long-running fleet does not grow without end', () => {
    const { m, clock } = meter();
    for (let i = 0; i < COMMAND_LOG_LIMIT + 5; i++) {
      m.handle('read', clock.now(), { cid: `c${i}` });
      clock.advance(1);
    }
    expect(m.received).toHaveLength(COMMAND_LOG_LIMIT);
    expect(m.received[0]?.cid).toBe('c5');
    expect(m.received.at(-1)?.cid).toBe(`c${COMMAND_LOG_LIMIT + 4}`);
    expect(m.counters.received).toBe(COMMAND_LOG_LIMIT + 5);
  });

  it('dropCommands loses the next n relay commands but not reads', () => {
    const { m, clock } = meter();
    m.dropCommands(2);
    expect(m.handle('read', clock.now(), cmd())).toBeDefined();
    expect(m.handle('disconnect', clock.now(), cmd())).toBeUndefined();
    expect(m.handle('disconnect', clock.now(), cmd())).toBeUndefined();
    expect(m.relay).toBe('connected');
    expect(m.handle('disconnect', clock.now(), cmd())?.relay).toBe('disconnected');
    expect(m.counters.dropped).toBe(2);
  });

  it('offlineUntil: no action and no answer until then', () => {
    const { m, clock } = meter();
    m.offlineUntil(clock.now() + 1000);
    expect(m.handle('disconnect', clock.now(), cmd())).toBeUndefined();
    expect(m.handle('read', clock.now(), cmd())).toBeUndefined();
    expect(m.relay).toBe('connected');
    clock.advance(1000);
    expect(m.handle('disconnect', clock.now(), cmd())?.relay).toBe('disconnected');
  });

  it('lateReplyMs delays the reply, not the action', () => {
    const { m, clock } = meter();
    m.setFaults({ lateReplyMs: 700 });
    const r = m.handle('disconnect', clock.now(), cmd());
    expect(r?.replyDelayMs).toBe(700);
    expect(m.relay).toBe('disconnected');
  });

  it('a stuck relay does not move and says so', () => {
    const { m, clock } = meter();
    m.setFaults({ stuckRelay: true });
    expect(m.handle('disconnect', clock.now(), cmd())).toMatchObject({ result: 'ok', relay: 'connected' });
    expect(m.relay).toBe('connected');
  });

  it('a lying meter claims the asked state; reads tell the truth', () => {
    const { m, clock } = meter({ remoteReconnect: 'arms', initialRelay: 'disconnected' });
    m.setFaults({ lieAboutSuccess: true });
    expect(m.handle('reconnect', clock.now(), cmd())?.relay).toBe('armed');
    expect(m.relay).toBe('disconnected');
    expect(m.handle('read', clock.now(), cmd())?.relay).toBe('disconnected');
  });

  it('garbleReplies garbles the next n replies with non-UTF-8 bytes', () => {
    const { m, clock } = meter();
    m.garbleReplies(1);
    const r = m.handle('read', clock.now(), cmd());
    expect(r?.garbled).toBe(true);
    expect(r?.garbage?.length).toBeGreaterThan(0);
    expect(() => new TextDecoder('utf-8', { fatal: true }).decode(r!.garbage)).toThrow();
    expect(m.lastReply).toBe(r);
    expect(m.handle('read', clock.now(), cmd())?.garbled).toBe(false);
  });

  it('nackCommands refuses the next n relay commands with a reason', () => {
    const { m, clock } = meter();
    m.nackCommands(1);
    expect(m.handle('read', clock.now(), cmd())?.result).toBe('ok');
    const r = m.handle('disconnect', clock.now(), cmd());
    expect(r).toMatchObject({ result: 'nack', relay: 'connected' });
    expect(r?.reason).toBeTruthy();
    expect(m.received.at(-1)?.fate).toBe('nacked');
    expect(m.handle('disconnect', clock.now(), cmd())?.result).toBe('ok');
  });

  it('a local trip opens the relay and emits a change', () => {
    const { m } = meter();
    const seen: string[] = [];
    m.onChange((mm, prev, cause) => seen.push(`${prev}->${mm.relay}:${cause}`));
    expect(m.trip()).toBe(true);
    expect(seen).toEqual(['connected->disconnected:trip']);
  });
});

describe('load limiter and load side (DOMAIN.md rules 10 and 14)', () => {
  it('a limit command sets the demand limit, serves the load only up to it, and a null limit removes it', () => {
    const { m, clock } = meter({ loadW: 2000 });
    const r = m.handle('limit', clock.now(), { cid: 'l1', limitW: 500 });
    expect(r?.result).toBe('ok');
    expect(r?.loadLimitW).toBe(500);
    expect(m.loadLimitW).toBe(500);
    clock.advance(3_600_000);
    expect(m.energyWh).toBe(500);
    m.handle('limit', clock.now(), { cid: 'l2', limitW: null });
    expect(m.loadLimitW).toBeNull();
    clock.advance(3_600_000);
    expect(m.energyWh).toBe(2500);
  });

  it('a limit command that does not say the limit is refused, and the limit in force stays', () => {
    const { m, clock } = meter();
    m.handle('limit', clock.now(), { cid: 'l1', limitW: 500 });
    const r = m.handle('limit', clock.now(), { cid: 'l2' });
    expect(r?.result).toBe('nack');
    expect(r?.reason).toBe('limit command without limitW');
    expect(r?.loadLimitW).toBe(500);
    expect(m.loadLimitW).toBe(500);
    expect(m.received.at(-1)?.fate).toBe('nacked');
  });

  it('a meter that lies claims the limit in its reply but keeps none', () => {
    const { m, clock } = meter({ faults: { lieAboutSuccess: true } });
    expect(m.handle('limit', clock.now(), { cid: 'l1', limitW: 500 })?.loadLimitW).toBe(500);
    expect(m.loadLimitW).toBeNull();
  });

  it('backfeed: voltage on the load side of an open relay; a meter that checks refuses to close, one that does not closes', () => {
    const checking = meter({ initialRelay: 'disconnected', checksLoadSide: true, faults: { backfeed: true } });
    expect(checking.m.loadSideVoltageV).toBeGreaterThan(200);
    const r = checking.m.handle('reconnect', checking.clock.now(), { cid: 'c1' });
    expect(r?.result).toBe('nack');
    expect(r?.refusal).toBe('load_side_voltage');
    expect(checking.m.relay).toBe('disconnected');

    const blind = meter({ initialRelay: 'disconnected', faults: { backfeed: true } });
    expect(blind.m.handle('reconnect', blind.clock.now(), { cid: 'c1' })?.result).toBe('ok');
    expect(blind.m.relay).toBe('connected');

    const clean = meter({ initialRelay: 'disconnected', checksLoadSide: true });
    expect(clean.m.loadSideVoltageV).toBe(0);
    expect(clean.m.handle('reconnect', clean.clock.now(), { cid: 'c1' })?.result).toBe('ok');
  });
});
