/**
 * Where the DLMS driver gets a meter's security material (security suite 0: AES-GCM-128) and its invocation
 * counters. The gateway implements it over the store (keys envelope-encrypted at rest, counters reserved ahead
 * in blocks); tests and the simulator may implement it in memory. Key bytes are never logged, never put in
 * evidence, API responses or audit payloads: only `keySetId` may appear there.
 */

/** One meter's keys for one association. */
export interface MeterKeys {
  /** Names this key set (it changes when the keys are renewed); counters are kept per meter and key set. */
  keySetId: string;
  /** Global unicast encryption key (GUEK), 16 bytes. */
  encryptionKey: Buffer;
  /** Global authentication key (GAK), 16 bytes. */
  authenticationKey: Buffer;
  /** Master key (KEK) used to wrap new keys in global_key_transfer, 16 bytes, when the key file gave one. */
  masterKey?: Buffer;
  /** The meter's own system title (8 bytes) when the key file gives it; otherwise the AARE's is used. */
  serverSystemTitle?: Buffer;
}

export interface MeterKeyring {
  /** The keys the next association with this meter uses; undefined when none were imported. */
  keysFor(meterId: string): Promise<MeterKeys | undefined>;
  /**
   * An invocation counter value for this meter and key set that was never handed out before, not even by an
   * earlier process (values are reserved durably ahead of use, so a kill -9 skips the rest of a block and never
   * repeats one). Strictly increasing per meter and key set.
   */
  nextInvocationCounter(meterId: string, keySetId: string): Promise<number>;
  /** The meter expects a counter of at least `atLeast` (read from its frame counter): never hand out less. */
  raiseInvocationCounter(meterId: string, keySetId: string, atLeast: number): Promise<void>;
  /** Keys staged for this meter by a renewal (global_key_transfer), not yet proven by an association. */
  pendingKeysFor?(meterId: string): Promise<MeterKeys | undefined>;
  /** An association with the staged keys succeeded: they become the meter's keys, the old ones are retired. */
  confirmPendingKeys?(meterId: string, keySetId: string): Promise<void>;
}
