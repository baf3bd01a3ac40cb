import type { Logger } from 'pino';
import type { DlmsPushHooks, MeterKeys, PushDecipherRefusal, PushSender } from '../../drivers/dlms/index.js';
import { CipheredApduError, decodeCipheredApdu } from '../../drivers/dlms/security/ciphered-apdu.js';
import { DecipherError, unprotect } from '../../drivers/dlms/security/suite0-cipher.js';
import { parseWrapperEndpoint } from '../../drivers/dlms/dlms-links.js';
import type { DlmsLinksConfig } from '../../drivers/dlms/dlms-config.js';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import type { GatewayStore, MeterView } from '../store/store.js';

/**
 * The gateway's push hooks for the DLMS driver's listener (issue 15 item 6; drivers/dlms/push-listener.ts):
 *
 * - decipher: a general-glo-ciphering notification (IEC 62056-5-3 §9.5, Green Book §9.2.7.2.4, security suite 0)
 *   names its sender by system title; the key store finds the meter whose current or pending key set names it
 *   (`StoreKeyring.keysForSystemTitle`), and the content is checked and deciphered with that meter's global
 *   unicast key and authentication key. Only authenticated content is accepted (an encrypted-only APDU has no tag
 *   to check). The meter's invocation counter must grow per meter and key set: a notification whose counter is
 *   not above the last one accepted is a replay, dropped. (The last counter is kept in memory: after a restart the
 *   first notification of each meter sets it again.)
 * - meterFor: a ciphered notification's meter is the one its system title named. A plain one is accepted only from
 *   a registered DLMS meter on a wrapper link whose place matches the sender: the device name in the body is the
 *   meter id, the frame's source wPort is the meter's logical device, and the connection comes from the link's
 *   host (a concentrator) or the meter's own host (direct meters). A meter that has keys must cipher what it
 *   pushes: its plain notifications are refused (anyone on the network could send one).
 *
 * Refusals are counted by the listener (unknown-system-title, bad-tag, replayed, unknown-meter) and logged here
 * with the meter and key set id, never a key.
 */

export interface PushKeyring {
  keysForSystemTitle(systemTitle: Buffer): Promise<{ meterId: string; keys: MeterKeys } | undefined>;
  keysFor(meterId: string): Promise<MeterKeys | undefined>;
}

export interface DlmsPushWiring {
  keyring: PushKeyring;
  store: Pick<GatewayStore, 'getMeter'>;
  links: Pick<DlmsLinksConfig, 'tcp'>;
  /** The loaded firmware profiles: only DLMS meters match, at their profile's logical device by default. */
  profiles: ReadonlyMap<string, FirmwareProfile>;
  logger: Logger;
}

export function dlmsPushHooks(w: DlmsPushWiring): Required<Pick<DlmsPushHooks, 'meterFor' | 'decipher'>> & { lastCounters: ReadonlyMap<string, number> } {
  const log = w.logger.child({ component: 'dlms-push' });
  /** Last invocation counter accepted per meter and key set. */
  const lastCounters = new Map<string, number>();
  /** The meter a system title was deciphered for (meterFor asks right after decipher). */
  const senders = new Map<string, string>();

  const decipher = async (systemTitle: Buffer, apdu: Uint8Array): Promise<Uint8Array | PushDecipherRefusal> => {
    const found = await w.keyring.keysForSystemTitle(systemTitle);
    const title = systemTitle.toString('hex');
    if (!found) return 'unknown-system-title';
    const { meterId, keys } = found;
    let plain;
    try {
      const c = decodeCipheredApdu(apdu);
      plain = unprotect(c.content, systemTitle, keys);
    } catch (e) {
      if (!(e instanceof DecipherError) && !(e instanceof CipheredApduError)) throw e;
      log.warn({ meterId, keySetId: keys.keySetId, systemTitle: title, err: e.message }, 'DLMS push: ciphered notification refused');
      return 'bad-tag';
    }
    if (!plain.securityControl.authenticated) {
      log.warn({ meterId, keySetId: keys.keySetId, systemTitle: title }, 'DLMS push: notification encrypted without authentication refused (no tag to check)');
      return 'bad-tag';
    }
    const slot = `${meterId}\u0000${keys.keySetId}`;
    const last = lastCounters.get(slot);
    if (last !== undefined && plain.invocationCounter <= last) {
      log.warn({ meterId, keySetId: keys.keySetId, invocationCounter: plain.invocationCounter, lastAccepted: last }, 'DLMS push: replayed notification (invocation counter did not grow)');
      return 'replayed';
    }
    lastCounters.set(slot, plain.invocationCounter);
    senders.set(title, meterId);
    if (senders.size > 10_000) senders.delete(senders.keys().next().value!);
    return plain.plaintext;
  };

  const plainSenderMatches = (meter: MeterView, sender: PushSender): boolean => {
    const profile = w.profiles.get(meter.profileId);
    if (profile?.protocol !== 'dlms') return false;
    // The wrapper frame's source wPort is the meter's logical device (IEC 62056-47 §6).
    const defaultLogical = profile.dlms.serverLogicalAddress;
    const link = w.links.tcp?.[meter.link];
    if (!link || link.kind !== 'wrapper') return false;
    const address = meter.address ?? null;
    if (link.host) {
      const logicalDevice = address === null || address.trim() === '' ? defaultLogical : Number(address);
      return link.host === sender.peerAddress && logicalDevice === sender.wPort;
    }
    try {
      const at = parseWrapperEndpoint(address, defaultLogical);
      return at.host === sender.peerAddress && at.logicalDevice === sender.wPort;
    } catch {
      return false;
    }
  };

  const meterFor = async (sender: PushSender): Promise<string | undefined> => {
    if (sender.systemTitle) return senders.get(sender.systemTitle.toString('hex'));
    if (!sender.logicalDeviceName) return undefined;
    const meterId = Buffer.from(sender.logicalDeviceName).toString('latin1');
    const meter = await w.store.getMeter(meterId);
    if (!meter || !plainSenderMatches(meter, sender)) return undefined;
    if (await w.keyring.keysFor(meterId)) {
      log.warn({ meterId, peer: sender.peerAddress, wPort: sender.wPort }, 'DLMS push: plain notification from a meter that has keys refused (it must cipher)');
      return undefined;
    }
    return meterId;
  };

  return { decipher, meterFor, lastCounters };
}
