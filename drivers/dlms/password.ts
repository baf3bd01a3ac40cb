import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { DlmsLinksConfig } from './dlms-config.js';

/**
 * The LLS password of a profile: the links config's `value`, else the environment variable it names,
 * else the profile's `passwordEnv`. A 'low' profile without one stops start-up with a message that says
 * exactly what to set. Profiles at 'lowest' or 'hls-gmac' (keys, not a password) need none.
 */
export function resolvePassword(profile: DlmsFirmwareProfile, passwords: DlmsLinksConfig['passwords'], env: Readonly<Record<string, string | undefined>>): Uint8Array | undefined {
  if (profile.dlms.security !== 'low') return undefined;
  const source = passwords[profile.id];
  if (source?.value !== undefined) return Buffer.from(source.value, 'latin1');
  const names = [source?.env, profile.dlms.passwordEnv].filter((n): n is string => n !== undefined);
  for (const name of names) {
    const v = env[name];
    if (v !== undefined && v !== '') return Buffer.from(v, 'latin1');
  }
  const tried = names.length > 0 ? `set the environment variable ${names.join(' or ')}` : 'name an environment variable';
  throw new Error(`DLMS profile ${profile.id} uses low-level security but has no password: ${tried}, or give passwords["${profile.id}"].value in the DLMS links config`);
}
