import type { FirmwareProfile } from './firmware-profile.js';

/**
 * Whether a firmware profile's meters have a demand limiter the gateway can set and read back (DOMAIN.md rule 10).
 * Without one a limit order could never be verified, so it is refused at admission (E_NO_LOAD_LIMITER). Each
 * protocol's profile part says so in its own words: MQTT by its `limitOp`; a Modbus limit register and a DLMS
 * class 71 limiter add their branch here with their profile fields.
 */
export function hasLoadLimiter(profile: FirmwareProfile): boolean {
  return profile.protocol === 'mqtt' && profile.mqtt.limitOp !== undefined;
}
