import { describe, expect, it } from 'vitest';
import { judgeAttempt } from '../../src/domain/attempt-verdict.js';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';
import { reconnectDeadline, retryDelay, HOUR_MS } from '../../src/domain/deadlines.js';

const closes = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 3, baseDelayMs: 1000, maxDelayMs: 8000 } };
const arms = { ...closes, relay: { ...closes.relay, remoteReconnect: 'arms' as const } };
const NOW = 1_764_000_000_000;

describe('success means verified (judgeAttempt)', () => {
  it('a reconnect is done only when the read-back shows connected', () => {
    const v = judgeAttempt({ action: 'reconnect', attempts: 1, supersededBy: null }, closes, { command: 'ok', readBack: 'connected' }, NOW, 0.5);
    expect(v).toMatchObject({ outcome: 'ok', next: 'done' });
  });

  it('a meter that claims success while the relay did not move is a verify_mismatch and is retried', () => {
    const v = judgeAttempt({ action: 'reconnect', attempts: 1, supersededBy: null }, closes, { command: 'ok', readBack: 'disconnected' }, NOW, 0.5);
    expect(v.outcome).toBe('verify_mismatch');
    expect(v.next).toBe('queued');
    expect(v.nextAttemptAt).toBeGreaterThan(NOW);
  });

  it('armed is success only where the profile says remote reconnect only arms', () => {
    expect(judgeAttempt({ action: 'reconnect', attempts: 1, supersededBy: null }, arms, { command: 'ok', readBack: 'armed' }, NOW, 0).next).toBe('armed');
    expect(judgeAttempt({ action: 'reconnect', attempts: 1, supersededBy: null }, closes, { command: 'ok', readBack: 'armed' }, NOW, 0).outcome).toBe('verify_mismatch');
  });

  it('a limit is done only when the read-back shows that very limit; a removal only when it shows none', () => {
    const limit = (limitW: number | null) => ({ action: 'limit' as const, limitW, attempts: 1, supersededBy: null });
    expect(judgeAttempt(limit(1500), closes, { command: 'ok', readBack: 'connected', readBackLimitW: 1500 }, NOW, 0)).toMatchObject({ outcome: 'ok', next: 'done', reason: 'read-back shows a limit of 1500 W in force' });
    expect(judgeAttempt(limit(1500), closes, { command: 'ok', readBack: 'connected', readBackLimitW: 1000 }, NOW, 0)).toMatchObject({ outcome: 'verify_mismatch', next: 'queued' });
    expect(judgeAttempt(limit(1500), closes, { command: 'ok', readBack: 'connected', readBackLimitW: null }, NOW, 0).outcome).toBe('verify_mismatch');
    expect(judgeAttempt(limit(null), closes, { command: 'ok', readBack: 'connected', readBackLimitW: null }, NOW, 0)).toMatchObject({ outcome: 'ok', next: 'done', reason: 'read-back shows no limit in force' });
  });

  it('a reading that says nothing of a limit (no limiter) never verifies one, not even a removal', () => {
    const v = judgeAttempt({ action: 'limit', limitW: null, attempts: 1, supersededBy: null }, closes, { command: 'ok', readBack: 'connected' }, NOW, 0);
    expect(v).toMatchObject({ outcome: 'verify_mismatch', next: 'queued' });
    expect(v.reason).toContain('no limit reported');
  });

  it('a command that timed out but whose read-back shows the asked state is done (the reply was lost, not the command)', () => {
    const v = judgeAttempt({ action: 'disconnect', attempts: 1, supersededBy: null }, closes, { command: 'timeout', readBack: 'disconnected' }, NOW, 0);
    expect(v).toMatchObject({ outcome: 'ok', next: 'done' });
  });

  it('after the last allowed attempt the order fails, saying how many were used', () => {
    const v = judgeAttempt({ action: 'disconnect', attempts: 3, supersededBy: null }, closes, { command: 'timeout', readBack: undefined }, NOW, 0);
    expect(v.next).toBe('failed');
    expect(v.reason).toContain('3 of 3');
  });

  it('an order superseded while on the wire is not retried', () => {
    const v = judgeAttempt({ action: 'disconnect', attempts: 1, supersededBy: 'r9' }, closes, { command: 'nack', readBack: 'connected' }, NOW, 0);
    expect(v).toMatchObject({ outcome: 'nack', next: 'superseded' });
  });

  it('an attempt interrupted by a restart is verified by the read and recorded as interrupted when it did not take effect', () => {
    const v = judgeAttempt({ action: 'disconnect', attempts: 1, supersededBy: null }, closes, { command: 'not_sent', readBack: 'connected' }, NOW, 0);
    expect(v).toMatchObject({ outcome: 'interrupted', next: 'queued' });
  });
});

describe('a meter that refuses the gateway’s credentials (auth_failed)', () => {
  const refused = 'meter 1/17 rejected the association: authenticationFailure (13): check the password or keys the gateway holds for it';

  it('fails the order at its first attempt, with attempts left, saying why in plain words', () => {
    const v = judgeAttempt({ action: 'reconnect', attempts: 1, supersededBy: null }, closes, { command: 'auth_failed', readBack: undefined, credentialsRefused: refused }, NOW, 0.5);
    expect(v).toMatchObject({ outcome: 'auth_failed', next: 'failed' });
    expect(v.nextAttemptAt).toBeUndefined();
    expect(v.reason).toBe(`the meter refused the gateway's credentials (${refused}); retrying with the same keys cannot succeed`);
  });

  it('a read-back the meter refuses ends the order the same way, even when the command claimed success', () => {
    const v = judgeAttempt({ action: 'disconnect', attempts: 1, supersededBy: null }, closes, { command: 'ok', readBack: undefined, credentialsRefused: `read-back: ${refused}` }, NOW, 0.5);
    expect(v).toMatchObject({ outcome: 'auth_failed', next: 'failed' });
  });

  it('an interrupted attempt whose verifying read is refused is auth_failed, not a retry', () => {
    const v = judgeAttempt({ action: 'disconnect', attempts: 1, supersededBy: null }, closes, { command: 'not_sent', readBack: undefined, credentialsRefused: `read-back: ${refused}` }, NOW, 0.5);
    expect(v).toMatchObject({ outcome: 'auth_failed', next: 'failed' });
  });

  it('a superseded order stays superseded (the newer order is judged on its own attempt)', () => {
    const v = judgeAttempt({ action: 'disconnect', attempts: 1, supersededBy: 'r9' }, closes, { command: 'auth_failed', readBack: undefined, credentialsRefused: refused }, NOW, 0);
    expect(v).toMatchObject({ outcome: 'auth_failed', next: 'superseded' });
  });

  it('a timeout is still retried: an unreachable meter is not a refusal', () => {
    const v = judgeAttempt({ action: 'reconnect', attempts: 1, supersededBy: null }, closes, { command: 'timeout', readBack: undefined }, NOW, 0.5);
    expect(v).toMatchObject({ outcome: 'timeout', next: 'queued' });
  });
});

describe('deadlines and backoff (fake clock)', () => {
  it('the reconnect deadline is the payment time plus the configured limit', () => {
    expect(reconnectDeadline(NOW, NOW + 5 * HOUR_MS, 24)).toBe(NOW + 24 * HOUR_MS);
    expect(reconnectDeadline(null, NOW, 12)).toBe(NOW + 12 * HOUR_MS);
  });

  it('backoff doubles per failed attempt, is capped, and jitter stays within half to full delay', () => {
    expect(retryDelay(1, 1000, 8000, 0)).toBe(500);
    expect(retryDelay(1, 1000, 8000, 0.999999)).toBe(1000);
    expect(retryDelay(3, 1000, 8000, 0.999999)).toBe(4000);
    expect(retryDelay(10, 1000, 8000, 0.999999)).toBe(8000);
    for (let i = 0; i < 100; i++) {
      const d = retryDelay(2, 1000, 8000, Math.random());
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });
});
