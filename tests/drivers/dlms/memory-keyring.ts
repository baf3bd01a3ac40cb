import type { MeterKeyring, MeterKeys } from '../../../drivers/dlms/security/keyring.js';

/**
 * An in-memory MeterKeyring for tests: keys per meter, invocation counters per meter and key set, strictly
 * increasing, every value handed out recorded so a test can assert none repeats.
 */
export class MemoryKeyring implements MeterKeyring {
  private readonly keys = new Map<string, MeterKeys>();
  private readonly pending = new Map<string, MeterKeys>();
  readonly confirmed: Array<{ meterId: string; keySetId: string }> = [];
  private readonly counters = new Map<string, number>();
  readonly handedOut: number[] = [];
  readonly raises: Array<{ meterId: string; keySetId: string; atLeast: number }> = [];

  set(meterId: string, keys: MeterKeys): void {
    this.keys.set(meterId, keys);
  }

  async keysFor(meterId: string): Promise<MeterKeys | undefined> {
    return this.keys.get(meterId);
  }

  /** Stage keys a renewal is about to transfer (undefined drops the pending set). */
  stage(meterId: string, keys: MeterKeys | undefined): void {
    if (keys) this.pending.set(meterId, keys);
    else this.pending.delete(meterId);
  }

  async pendingKeysFor(meterId: string): Promise<MeterKeys | undefined> {
    return this.pending.get(meterId);
  }

  async confirmPendingKeys(meterId: string, keySetId: string): Promise<void> {
    const p = this.pending.get(meterId);
    if (p?.keySetId !== keySetId) throw new Error(`no pending key set ${keySetId} for ${meterId}`);
    this.keys.set(meterId, p);
    this.pending.delete(meterId);
    this.confirmed.push({ meterId, keySetId });
  }

  async nextInvocationCounter(meterId: string, keySetId: string): Promise<number> {
    const key = `${meterId}/${keySetId}`;
    const next = (this.counters.get(key) ?? 0) + 1;
    this.counters.set(key, next);
    this.handedOut.push(next);
    return next;
  }

  async raiseInvocationCounter(meterId: string, keySetId: string, atLeast: number): Promise<void> {
    this.raises.push({ meterId, keySetId, atLeast });
    const key = `${meterId}/${keySetId}`;
    // The next value handed out is at least `atLeast`.
    if ((this.counters.get(key) ?? 0) < atLeast - 1) this.counters.set(key, atLeast - 1);
  }
}
