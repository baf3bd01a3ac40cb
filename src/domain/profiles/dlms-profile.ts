import { z } from 'zod';

/**
 * The DLMS/COSEM part of a firmware profile (IEC 62056-46 HDLC on a serial line, IEC 62056-5-3 application
 * layer): who the gateway is on the meter's HDLC link, how it authenticates, what the meter negotiates, and
 * which control mode (Disconnect control, class 70) the model ships with. The password is never in the
 * profile: `passwordEnv` names the environment variable that holds it (the DLMS links config may override).
 */

/**
 * The keys a profile's meters need from their key set (the manufacturer's key file): GUEK (global unicast encryption
 * key) and GAK (global authentication key) for HLS-GMAC and ciphering, KEK (master key) where the gateway is to renew
 * the keys (class 64 global_key_transfer wraps new keys under it).
 */
export const DLMS_KEY_NAMES = ['GUEK', 'GAK', 'KEK'] as const;
export type DlmsKeyName = (typeof DLMS_KEY_NAMES)[number];

/** Whether a profile authenticates or ciphers with the meter's keys (and so must name them in `keys`). */
export const usesMeterKeys = (p: { security: string; ciphering: string }): boolean => p.security === 'hls-gmac' || p.ciphering !== 'none';

/** Action-Result names (IEC 62056-5-3 §9.3.x) a meter may refuse remote_reconnect with. */
export const LOAD_SIDE_REFUSAL_RESULTS = ['hardware-fault', 'temporary-failure', 'read-write-denied', 'object-unavailable', 'other-reason'] as const;
export type LoadSideRefusalResult = (typeof LOAD_SIDE_REFUSAL_RESULTS)[number];

const obis = z.string().regex(/^\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/, 'an OBIS code like 0-0:96.3.10.255');

/**
 * The integer types a limiter's thresholds may have, with their ranges. Blue Book (IEC 62056-6-2) class 71: the
 * thresholds take the type of the monitored value (attribute 2), e.g. double-long-unsigned watts of 1-0:1.7.0.255.
 */
export const LIMITER_THRESHOLD_RANGES = {
  'long-unsigned': { min: 0, max: 0xffff },
  'double-long-unsigned': { min: 0, max: 0xffff_ffff },
  long: { min: -0x8000, max: 0x7fff },
  'double-long': { min: -0x8000_0000, max: 0x7fff_ffff },
} as const;
export type LimiterThresholdType = keyof typeof LIMITER_THRESHOLD_RANGES;
const THRESHOLD_TYPES = Object.keys(LIMITER_THRESHOLD_RANGES) as [LimiterThresholdType, ...LimiterThresholdType[]];
const DOUBLE_LONG_UNSIGNED_MAX = LIMITER_THRESHOLD_RANGES['double-long-unsigned'].max;

/**
 * The meter's load limiter (COSEM class 71 "Limiter", version 0; DOMAIN.md rule 10), where the model has one. The
 * gateway writes threshold_normal (attribute 4) and reads threshold_active (attribute 3) back; emergency thresholds
 * and profiles belong to the utility's demand-response scheme and are never written. A threshold is a raw number of
 * the monitored register's units: watts = raw × 10^scaler.
 */
export const DlmsLimiterSchema = z
  .object({
    /** The limiter object; IDIS and the Blue Book's OBIS list put it at 0-0:17.0.0.255. */
    logicalName: obis.default('0-0:17.0.0.255'),
    /** The threshold the gateway writes: threshold_normal (threshold_active follows it while no emergency profile is active). */
    threshold: z.literal('normal').default('normal'),
    /** The thresholds' data type: the monitored value's (its register's attribute 2). */
    type: z.enum(THRESHOLD_TYPES).default('double-long-unsigned'),
    /** The monitored register's scaler (its scaler_unit, unit W): watts = raw × 10^scaler. */
    scaler: z.number().int().min(-6).max(6).default(0),
    /**
     * The raw threshold meaning "no limit". Real meters ship with the type's maximum (0xFFFFFFFF for
     * double-long-unsigned), which no demand reaches; the default. Set it where a meter's manual names another.
     */
    noLimitValue: z.number().int().optional(),
    /**
     * Also write min_over_threshold_duration (attribute 6, double-long-unsigned seconds) with every limit: how long the
     * demand may stay over the threshold before the over-threshold action (the disconnect) runs. Left as the meter has it when absent.
     */
    minOverThresholdDurationS: z.number().int().min(0).max(DOUBLE_LONG_UNSIGNED_MAX).optional(),
  })
  .strict()
  .superRefine((l, ctx) => {
    const range = LIMITER_THRESHOLD_RANGES[l.type];
    if (l.noLimitValue !== undefined && (l.noLimitValue < range.min || l.noLimitValue > range.max)) {
      ctx.addIssue({ code: 'custom', path: ['noLimitValue'], message: `noLimitValue ${l.noLimitValue} does not fit the threshold type ${l.type} (${range.min}..${range.max})` });
    }
  });
export type DlmsLimiter = z.infer<typeof DlmsLimiterSchema>;

/** The raw threshold that means "no limit" for a limiter: its profile's, else the type's maximum. */
export const noLimitValueOf = (l: DlmsLimiter): number => l.noLimitValue ?? LIMITER_THRESHOLD_RANGES[l.type].max;

export const DlmsProfileSchema = z
  .object({
    /** Client SAP: 16 = public client (lowest security), 1 = management client (typically low security). */
    clientSap: z.number().int().min(1).max(127),
    /** Upper HDLC address (logical device), 1 = management logical device; the lower comes from the meter's address. */
    serverLogicalAddress: z.number().int().min(0).max(16383).default(1),
    /**
     * 'lowest': no authentication; 'low': LLS, a password sent in the AARQ; 'hls-gmac': HLS authentication
     * mechanism 5 in security suite 0 with the meter's keys from the key store (never from the profile).
     */
    security: z.enum(['lowest', 'low', 'hls-gmac']),
    /** Security policy for every service APDU after the association (Green Book §9.2.7.2): needs the meter's keys. */
    ciphering: z.enum(['none', 'authenticated', 'encrypted', 'authenticated-encrypted']).default('none'),
    /** A fresh random dedicated key per association, sent in the glo-initiate-request (needs encryption in `ciphering`). */
    dedicatedKey: z.boolean().default(false),
    /**
     * The form of the ciphered service APDUs (Green Book §9.2.7.2.4, IEC 62056-5-3 §9.5): 'service-specific' =
     * glo-/ded-get/set/action-request (0xC8–0xD3); 'general' = general-glo-ciphering (0xDB) or, with a dedicated key,
     * general-ded-ciphering (0xDC), each carrying the gateway's system title. 'general' proposes the general-protection
     * conformance bit and needs the meter to grant it. The AARQ carries a glo-initiate-request either way.
     */
    cipheredApdu: z.enum(['service-specific', 'general']).default('service-specific'),
    /**
     * The keys each meter of this profile needs in its key set: GUEK and GAK for hls-gmac or ciphering, plus KEK where
     * key renewal is wanted. Required for those profiles, refused for lowest/low without ciphering. The driver refuses
     * to associate (auth_failed, no traffic) and the key import refuses a row, when a needed key is missing.
     */
    keys: z.array(z.enum(DLMS_KEY_NAMES)).min(1).max(3).optional(),
    /** The frame counter object (class 1 Data, attribute 2) read through the public client to resynchronise the invocation counter. */
    frameCounterObis: obis.default('0-0:43.1.0.255'),
    /** The Security setup object (class 64) whose global_key_transfer (method 2) renews the meter's keys. */
    securitySetupObis: obis.default('0-0:43.0.0.255'),
    /** The public client's SAP (lowest security, read-only), used for the frame counter; 16 in IEC 62056-46. */
    publicClientSap: z.number().int().min(1).max(127).default(16),
    /** Environment variable holding the LLS password (upper-case, e.g. METERLINE_DLMS_PASSWORD_ACME_E570). */
    passwordEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable name: A-Z, 0-9 and _').optional(),
    /** The meter's serial speed (optical probe 9600 after IEC 62056-21 mode E, RS-485 commonly 9600–115200). */
    baudRate: z.number().int().min(300).max(921_600),
    /** Disconnect control mode the model ships in (0–6); the driver reads the meter's actual mode and warns on a mismatch. */
    controlMode: z.number().int().min(0).max(6),
    hdlc: z
      .object({
        /** Maximum information field length the gateway proposes to send / receive (IEC 62056-46 §6.4.4.4.3.2). */
        maxInfoTx: z.number().int().min(32).max(2030).default(128),
        maxInfoRx: z.number().int().min(32).max(2030).default(128),
        /** Window sizes (frames in flight); 1 is what most meters do. */
        windowTx: z.number().int().min(1).max(7).default(1),
        windowRx: z.number().int().min(1).max(7).default(1),
        /** How long to wait for a frame's answer before a frame-level repeat (the meter's response time). */
        responseTimeoutMs: z.number().int().min(10).max(30_000).default(500),
      })
      .strict(),
    /** client-max-receive-pdu-size proposed in the AARQ; answers larger than this arrive as GET data blocks. */
    maxPduSize: z.number().int().min(12).max(65_535).default(1024),
    /** The load limiter (class 71), for models that have one: the gateway can then set and remove demand limits. */
    limiter: DlmsLimiterSchema.optional(),
    /**
     * The action results of remote_reconnect (IEC 62056-5-3 Action-Result) with which this meter refuses to close for
     * voltage on the load side (DOMAIN.md rule 14). With `obis.loadSideVoltage` the register, read in the same
     * association, must show the voltage too, so an ordinary refusal with the same result is not taken for it.
     */
    loadSideRefusalResults: z.array(z.enum(LOAD_SIDE_REFUSAL_RESULTS)).min(1).optional(),
    /** Logical names, for meters that deviate from the standard's instances. */
    obis: z
      .object({
        disconnectControl: obis.default('0-0:96.3.10.255'),
        activeEnergyImport: obis.default('1-0:1.8.0.255'),
        voltage: obis.default('1-0:32.7.0.255'),
        clock: obis.default('0-0:1.0.0.255'),
        /**
         * Voltage on the load (customer) side of the disconnector, class 3 Register, read with the relay (DOMAIN.md
         * rule 14). No standard instance: makers put it in a manufacturer-specific code (value groups 128–254).
         */
        loadSideVoltage: obis.optional(),
      })
      .strict()
      .default({ disconnectControl: '0-0:96.3.10.255', activeEnergyImport: '1-0:1.8.0.255', voltage: '1-0:32.7.0.255', clock: '0-0:1.0.0.255' }),
  })
  .strict()
  .refine((p) => p.security !== 'low' || p.passwordEnv !== undefined, {
    message: "security 'low' needs passwordEnv (the password itself never goes in a profile)",
    path: ['passwordEnv'],
  })
  .refine((p) => p.security !== 'hls-gmac' || p.passwordEnv === undefined, {
    message: "security 'hls-gmac' authenticates with the meter's keys from the key store, not a password: remove passwordEnv",
    path: ['passwordEnv'],
  })
  .refine((p) => p.ciphering === 'none' || p.security !== 'lowest', {
    message: "ciphering needs the meter's keys and an authenticated association: use security 'hls-gmac' (or 'low'), not 'lowest'",
    path: ['ciphering'],
  })
  .refine((p) => !p.dedicatedKey || p.ciphering === 'encrypted' || p.ciphering === 'authenticated-encrypted', {
    message: "dedicatedKey needs ciphering 'encrypted' or 'authenticated-encrypted' (the dedicated key travels encrypted in the glo-initiate-request)",
    path: ['dedicatedKey'],
  })
  .refine((p) => p.cipheredApdu !== 'general' || p.ciphering !== 'none', {
    message: "cipheredApdu 'general' (general-glo/ded-ciphering) needs ciphering other than 'none': there is nothing to cipher otherwise",
    path: ['cipheredApdu'],
  })
  .refine((p) => !usesMeterKeys(p) || p.keys !== undefined, {
    message: 'security \'hls-gmac\' and ciphering use the meter\'s keys: name the keys its key set must hold, e.g. "keys": ["GUEK", "GAK"] (add "KEK" where key renewal is wanted)',
    path: ['keys'],
  })
  .refine((p) => usesMeterKeys(p) || p.keys === undefined, {
    message: "security 'lowest' or 'low' without ciphering uses no meter keys: remove keys",
    path: ['keys'],
  })
  .refine((p) => p.keys === undefined || (p.keys.includes('GUEK') && p.keys.includes('GAK')), {
    message: 'keys must include "GUEK" and "GAK" (HLS-GMAC and suite 0 ciphering use both); "KEK" is optional',
    path: ['keys'],
  })
  .refine((p) => p.keys === undefined || new Set(p.keys).size === p.keys.length, {
    message: 'keys lists each key once',
    path: ['keys'],
  })
  .refine((p) => p.publicClientSap !== p.clientSap || p.security === 'lowest', {
    message: 'the public client SAP must differ from the secured client SAP',
    path: ['publicClientSap'],
  });
export type DlmsProfile = z.infer<typeof DlmsProfileSchema>;
