import type { FirmwareProfile } from './firmware-profile.js';

/**
 * Whether a firmware profile's meters have a demand limiter the gateway can set and read back (DOMAIN.md rule 10).
 * Without one a limit order could never be verified, so it is refused at admission (E_NO_LOAD_LIMITER). Each
 * protocol's profile part says so in its own words: MQTT its `limitOp`, Modbus its `loadLimit` register, DLMS its
 * class 71 `limiter`.
 */
export function hasLoadLimiter(profile: FirmwareProfile): boolean {
  switch (profile.protocol) {
    case 'mqtt':
      return profile.mqtt.limitOp !== undefined;
    case 'modbus':
      return profile.modbus.loadLimit !== undefined;
    case 'dlms':
      return profile.dlms.limiter !== undefined;
  }
}
