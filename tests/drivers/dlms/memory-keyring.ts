import type { MeterKeyring, MeterKeys } from '../../../drivers/dlms/security/keyring.js';

/**
 * An in-memory MeterKeyring for tests: keys per meter, invocation counters per meter and key set, strictly
 * increasing, every value handed out recorded so a test can assert none repeats.
 */
export class MemoryKeyring implements MeterKeyring {
  private readonly keys = new Map<string, MeterKeys>();
  private readonly counters = new Map<string, number>();
  readonly handedOut: number[] = [];
  readonly raises: Array<{ meterId: string; keySetId: string; atLeast: number }> = [];

  set(meterId: string, keys: MeterKeys): void {
    this.keys.set(meterId, keys);
  }

  async keysFor(meterId: string): Promise<MeterKeys | undefined> {
    return this.keys.get(meterId);
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
