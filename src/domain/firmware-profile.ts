import { z } from 'zod';
import { DlmsProfileSchema } from './profiles/dlms-profile.js';
import { ModbusRegisterMapSchema } from './profiles/modbus-profile.js';

/**
 * A firmware profile describes one meter model and firmware: protocol and addressing, timeouts,
 * what a remote reconnect does, retry limits and quirks. Adding a meter model means adding a profile
 * file in `firmware-profiles/`, not code.
 */
const topicTemplate = z
  .string()
  .min(1)
  .refine((t) => t.includes('{meterId}'), { message: 'topic template must contain {meterId}' })
  .refine((t) => !/[#+]/.test(t), { message: 'topic template must not contain MQTT wildcards' });

export const MqttAddressingSchema = z
  .object({
    /** Topic the gateway publishes commands to; `{meterId}` is replaced by the meter id. */
    commandTopic: topicTemplate,
    /** Topic the meter answers commands on (payload carries the request's `cid`). */
    replyTopic: topicTemplate,
    /** Topic the meter publishes unsolicited status reports on. */
    statusTopic: topicTemplate,
    qos: z.union([z.literal(1), z.literal(2)]).default(1),
    /**
     * The firmware answers on the MQTT 5 Response Topic the command names (echoing its Correlation Data) when
     * there is one, else on `replyTopic`. With it, each gateway instance names its own reply topic, so a reply
     * reaches the instance that asked and no other (what a cluster of instances needs).
     */
    responseTopic: z.boolean().default(false),
    /**
     * The op word of the firmware's demand limiter (DOMAIN.md rule 10): `{"cid","op":<limitOp>,"limitW":500|null}`,
     * every reply then carries `"loadLimitW"` (null: none in force). Absent: the firmware has no limiter.
     */
    limitOp: z.string().min(1).optional(),
    /** The words this firmware uses on the wire for each relay state. */
    relayValues: z
      .object({ connected: z.string().min(1), disconnected: z.string().min(1), armed: z.string().min(1) })
      .strict(),
    /**
     * The nack `reason` words with which this firmware refuses to close because there is voltage on the load side
     * (DOMAIN.md rule 14): such a nack is `load_side_voltage`, never retried. Needed when the meter checks itself.
     */
    loadSideRefusalReasons: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict();

/**
 * Who checks the load side of an open relay for voltage before it is closed (DOMAIN.md rule 14): voltage there
 * means a bypass, a generator backfeed or tampering, and closing onto it is dangerous.
 * - `none`: nobody (the profile does not demand the check);
 * - `meter`: the meter checks itself and refuses to close; the protocol part says how it reports the refusal (MQTT
 *   `loadSideRefusalReasons`, DLMS `loadSideRefusalResults` and/or `obis.loadSideVoltage`), and a read-back that
 *   still shows the relay open with more than `maxVoltageV` on the load side is taken as the same refusal;
 * - `gateway`: the gateway reads the relay first and sends no close while the load side shows more than
 *   `maxVoltageV`; a reading without the load-side voltage is a profile problem (`garbled`), never a blind close.
 */
export const LOAD_SIDE_CHECKERS = ['none', 'meter', 'gateway'] as const;
export type LoadSideVoltageCheck = { checkedBy: (typeof LOAD_SIDE_CHECKERS)[number]; maxVoltageV: number };
/** Above this the load side of an open relay is live (the safe default: a backfeed shows near-nominal voltage, induction a few volts). */
export const DEFAULT_LOAD_SIDE_MAX_V = 50;
export const NO_LOAD_SIDE_CHECK: LoadSideVoltageCheck = { checkedBy: 'none', maxVoltageV: DEFAULT_LOAD_SIDE_MAX_V };

const LoadSideVoltageCheckSchema = z
  .union([z.boolean(), z.object({ checkedBy: z.enum(LOAD_SIDE_CHECKERS), maxVoltageV: z.number().min(1).max(1000).default(DEFAULT_LOAD_SIDE_MAX_V) }).strict()])
  .optional()
  .superRefine((v, ctx) => {
    // Profiles before the structure said `false` (kept loading as none); a bare `true` never said who checks.
    if (v === true) ctx.addIssue({ code: 'custom', message: 'loadSideVoltageCheck: say who checks, e.g. { "checkedBy": "meter" } or { "checkedBy": "gateway", "maxVoltageV": 50 }' });
  })
  .transform((v): LoadSideVoltageCheck => (v === undefined || typeof v === 'boolean' ? NO_LOAD_SIDE_CHECK : v));

/** What every profile says, whatever the protocol. */
const profileCommon = {
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, ".", "_" and "-"'),
  manufacturer: z.string().min(1),
  model: z.string().min(1),
  firmware: z.string().min(1),
  /** The data sheet this profile was written from: maker, document, version. */
  source: z.string().min(1).optional(),
  relay: z
    .object({
      /** `closes`: a remote reconnect closes the relay. `arms`: it only arms it; the customer presses the button. */
      remoteReconnect: z.enum(['closes', 'arms']),
      /** Time the relay needs to operate; the read-back is taken after it. */
      operateTimeMs: z.number().int().min(0).max(60_000),
      /** Who checks the load-side voltage before closing (DOMAIN.md rule 14); `false` or absent: none. */
      loadSideVoltageCheck: LoadSideVoltageCheckSchema,
    })
    .strict(),
  timeouts: z
    .object({
      /** How long to wait for the answer to a relay command. */
      commandMs: z.number().int().min(50).max(600_000),
      /** How long to wait for the answer to a read. */
      readMs: z.number().int().min(50).max(600_000),
    })
    .strict(),
  retry: z
    .object({
      /** Total attempts for one order, the first included. */
      maxAttempts: z.number().int().min(1).max(100),
      baseDelayMs: z.number().int().min(0).max(3_600_000),
      maxDelayMs: z.number().int().min(0).max(86_400_000),
    })
    .strict()
    .refine((r) => r.maxDelayMs >= r.baseDelayMs, { message: 'maxDelayMs must be >= baseDelayMs' }),
  quirks: z.array(z.string()).default([]),
};

/** A profile is common fields plus the addressing of its protocol; `protocol` selects the driver. */
export const FirmwareProfileSchema = z
  .discriminatedUnion('protocol', [
    z.object({ ...profileCommon, protocol: z.literal('mqtt'), mqtt: MqttAddressingSchema }).strict(),
    z.object({ ...profileCommon, protocol: z.literal('modbus'), modbus: ModbusRegisterMapSchema }).strict(),
    z.object({ ...profileCommon, protocol: z.literal('dlms'), dlms: DlmsProfileSchema }).strict(),
  ])
  .superRefine((p, ctx) => {
    const problem = loadSideProblem(p);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, path: ['relay', 'loadSideVoltageCheck'] });
  });

export type FirmwareProfile = z.infer<typeof FirmwareProfileSchema>;
export type MqttFirmwareProfile = Extract<FirmwareProfile, { protocol: 'mqtt' }>;
export type ModbusFirmwareProfile = Extract<FirmwareProfile, { protocol: 'modbus' }>;
export type DlmsFirmwareProfile = Extract<FirmwareProfile, { protocol: 'dlms' }>;
export type MqttAddressing = z.infer<typeof MqttAddressingSchema>;

/**
 * A load-side check the profile cannot carry out: a self-checking meter whose refusal the gateway would not
 * recognise, or a gateway check on a DLMS or Modbus meter with no load-side voltage register to read. (MQTT firmware
 * reports the voltage in its replies: a reading without it is caught at run time, and the close is not sent.)
 */
function loadSideProblem(p: FirmwareProfile): string | undefined {
  const { checkedBy } = p.relay.loadSideVoltageCheck;
  if (checkedBy === 'meter' && p.protocol === 'mqtt' && p.mqtt.loadSideRefusalReasons === undefined) {
    return 'checkedBy "meter" needs mqtt.loadSideRefusalReasons: the nack reason word(s) the firmware refuses a close with';
  }
  if (checkedBy === 'meter' && p.protocol === 'dlms' && p.dlms.loadSideRefusalResults === undefined && p.dlms.obis.loadSideVoltage === undefined) {
    return 'checkedBy "meter" needs dlms.loadSideRefusalResults (the action results of remote_reconnect that mean the refusal) or dlms.obis.loadSideVoltage';
  }
  if (checkedBy === 'gateway' && p.protocol === 'dlms' && p.dlms.obis.loadSideVoltage === undefined) {
    return 'checkedBy "gateway" needs dlms.obis.loadSideVoltage: the register the gateway reads before closing';
  }
  if (checkedBy === 'meter' && p.protocol === 'modbus' && p.modbus.closeRefusal === undefined) {
    return 'checkedBy "meter" needs modbus.closeRefusal: the exception code or status bit the device refuses a close with';
  }
  if (checkedBy === 'gateway' && p.protocol === 'modbus' && p.modbus.loadSideVoltageV === undefined) {
    return 'checkedBy "gateway" needs modbus.loadSideVoltageV: the point the gateway reads before closing';
  }
  return undefined;
}

/** Topic templates split at `{meterId}`, once each: topics are built and matched per message (issue 19). */
const templateParts = new Map<string, string[]>();
function partsOf(template: string): string[] {
  let parts = templateParts.get(template);
  if (!parts) {
    parts = template.split('{meterId}');
    if (templateParts.size < 1000) templateParts.set(template, parts);
  }
  return parts;
}

/** Replace `{meterId}` in a topic template. */
export function topicFor(template: string, meterId: string): string {
  const parts = partsOf(template);
  return parts.length === 2 ? parts[0]! + meterId + parts[1]! : parts.join(meterId);
}

/** The single-level wildcard subscription that covers a topic template for every meter. */
export function wildcardFor(template: string): string {
  return template.replaceAll('{meterId}', '+');
}

/** Extract the meter id from a concrete topic, or undefined if the topic does not fit the template. */
export function meterIdFromTopic(template: string, topic: string): string | undefined {
  const [before, after] = partsOf(template) as [string, string];
  if (!topic.startsWith(before) || !topic.endsWith(after)) return undefined;
  const id = topic.slice(before.length, topic.length - after.length);
  return id.length > 0 && !id.includes('/') ? id : undefined;
}

/** Narrow a profile to MQTT, naming the profile when it is not (a meter wired to the wrong simulator or driver). */
export function asMqttProfile(profile: FirmwareProfile): MqttFirmwareProfile {
  if (profile.protocol !== 'mqtt') throw new Error(`firmware profile ${profile.id} is ${profile.protocol}, not mqtt`);
  return profile;
}
