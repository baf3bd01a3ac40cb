import type { Logger } from 'pino';
import type { DlmsFirmwareProfile, FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsLinksConfigSchema, type DlmsLinksConfigInput } from './dlms-config.js';
import { DlmsDriver, type DlmsPushHooks } from './dlms-driver.js';
import type { MeterKeyring } from './security/keyring.js';

export { DlmsDriver, type KeyTransferResult, type DlmsDriverOptions, type DlmsDriverCounters, type DlmsPushHooks } from './dlms-driver.js';
export type { MeterKeyring, MeterKeys } from './security/keyring.js';
export { DlmsLinksConfigSchema, DlmsPortSchema, DlmsPasswordSourceSchema, DlmsTcpLinkSchema, DlmsPushSchema, type DlmsLinksConfig, type DlmsLinksConfigInput, type DlmsPortConfig, type DlmsTcpLinkConfig, type DlmsPushConfig } from './dlms-config.js';
export type { PushDecipher, PushDecipherRefusal, PushSender, PushDropReason } from './push-listener.js';

export interface CreateDlmsDriverOptions {
  /** The DLMS links config (validated here with zod; a bad value throws naming the field). */
  links: DlmsLinksConfigInput;
  /** Every loaded profile; the driver takes the DLMS ones. */
  profiles: Iterable<FirmwareProfile>;
  logger: Logger;
  /** Where passwords named by `passwordEnv` are looked up. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** The key store's view for HLS/ciphering profiles (a meter without keys gets `auth_failed`). */
  keyring?: MeterKeyring;
  /** Who a pushed notification is from, and how to decipher it (see push-listener.ts). */
  push?: DlmsPushHooks;
}

/**
 * Build the DLMS driver from configuration. Throws at start-up, naming the profile, when a profile with
 * low-level security has no password, and naming the field when the links config is invalid.
 */
export function createDlmsDriver({ links, profiles, logger, env, keyring, push }: CreateDlmsDriverOptions): DlmsDriver {
  const parsed = DlmsLinksConfigSchema.safeParse(links);
  if (!parsed.success) {
    throw new Error(`invalid DLMS links config:\n${parsed.error.issues.map((i) => `  - ${i.path.join('.') || '(top level)'}: ${i.message}`).join('\n')}`);
  }
  const dlms = [...profiles].filter((p): p is DlmsFirmwareProfile => p.protocol === 'dlms');
  return new DlmsDriver({ links: parsed.data, profiles: dlms, logger, ...(env ? { env } : {}), ...(keyring ? { keyring } : {}), ...(push ? { push } : {}) });
}
