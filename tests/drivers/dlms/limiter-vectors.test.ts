import { describe, expect, it } from 'vitest';
import { data, encodeData } from '../../../drivers/dlms/axdr.js';
import { CosemClient } from '../../../drivers/dlms/cosem-client.js';
import { actionItem, decodeThreshold, encodeThreshold, LIMITER_ATTRIBUTE_NAMES, LIMITER_CLASS_ID, LimiterAttribute, thresholdEncoding, valueDefinition } from '../../../drivers/dlms/cosem/limiter.js';
import { OBIS } from '../../../drivers/dlms/cosem/obis.js';
import { LLC_RESPONSE, stripLlc } from '../../../drivers/dlms/llc.js';
import { AccessResult, decodeRequest, decodeResponse, encodeRequest, encodeResponse } from '../../../drivers/dlms/xdlms-apdu.js';
import { DlmsProfileSchema, DlmsLimiterSchema } from '../../../src/domain/profiles/dlms-profile.js';
import { DlmsSimMeter } from '../../../simulators/dlms-meter.js';
import { SimulatedMeter } from '../../../simulators/meter-model.js';

/**
 * Class 71 "Limiter" (IEC 62056-6-2 / Blue Book §4.5.9) at 0-0:17.0.0.255: the GET and SET APDUs the driver sends
 * and the answers it reads, worked out byte by byte from the APDU structure (IEC 62056-5-3 §9.3) and A-XDR; the
 * threshold codec; the profile's `dlms.limiter`; and the simulated meter's answers to every attribute.
 */
const bytes = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');
const limiterAttr = (attribute: number) => ({ classId: LIMITER_CLASS_ID, logicalName: OBIS.limiter, attribute, name: LIMITER_ATTRIBUTE_NAMES[attribute]! });
const WATTS = thresholdEncoding(DlmsLimiterSchema.parse({}));

describe('GET and SET on the Limiter (class 71, 0-0:17.0.0.255)', () => {
  it('GET-Request-Normal of threshold_active (attribute 3) and its answer double-long-unsigned 5000', () => {
    const req = encodeRequest({ kind: 'get', invokeId: 1, attribute: limiterAttr(LimiterAttribute.thresholdActive) });
    // C0 get-request, 01 normal, C1 invoke-id 1 high priority confirmed, 0047 class 71, 0000110000FF, 03, 00 no selection
    expect(hex(req)).toBe('C0 01 C1 00 47 00 00 11 00 00 FF 03 00');
    expect(decodeRequest(req)).toEqual({ kind: 'get', invokeId: 1, attribute: { classId: 71, logicalName: [0, 0, 17, 0, 0, 255], attribute: 3 } });
    const res = decodeResponse(bytes('C4 01 C1 00 06 00 00 13 88')); // 00 data, 06 double-long-unsigned 0x1388
    expect(res).toEqual({ kind: 'get', invokeId: 1, result: { data: { type: 'double-long-unsigned', value: 5000 } } });
    expect(res.kind === 'get' && 'data' in res.result && decodeThreshold(WATTS, res.result.data)).toBe(5000);
  });

  it('threshold_active at the type maximum 0xFFFFFFFF reads as no limit (null)', () => {
    const res = decodeResponse(bytes('C4 01 C2 00 06 FF FF FF FF'));
    expect(res.kind === 'get' && 'data' in res.result && decodeThreshold(WATTS, res.result.data)).toBeNull();
  });

  it('SET-Request-Normal of threshold_normal (attribute 4) = 5000 W, and the answers success and read-write-denied', () => {
    const value = encodeThreshold(WATTS, 5000);
    expect(value).toEqual({ type: 'double-long-unsigned', value: 5000 });
    const req = encodeRequest({ kind: 'set', invokeId: 2, attribute: limiterAttr(LimiterAttribute.thresholdNormal), value: value as Exclude<typeof value, string> });
    // C1 set-request, 01 normal, C2 invoke-id 2, class 71, LN, 04 threshold_normal, 00 no selection, 06 00001388
    expect(hex(req)).toBe('C1 01 C2 00 47 00 00 11 00 00 FF 04 00 06 00 00 13 88');
    expect(hex(encodeResponse({ kind: 'set', invokeId: 2, result: AccessResult.success }))).toBe('C5 01 C2 00');
    expect(decodeResponse(bytes('C5 01 C2 03'))).toEqual({ kind: 'set', invokeId: 2, result: AccessResult.readWriteDenied });
    expect(decodeResponse(bytes('C5 01 C2 0C'))).toEqual({ kind: 'set', invokeId: 2, result: AccessResult.typeUnmatched });
  });

  it('removing the limit writes the "no limit" value; min_over_threshold_duration (attribute 6) is double-long-unsigned seconds', () => {
    const none = encodeThreshold(WATTS, null) as Exclude<ReturnType<typeof encodeThreshold>, string>;
    expect(hex(encodeRequest({ kind: 'set', invokeId: 3, attribute: limiterAttr(LimiterAttribute.thresholdNormal), value: none }))).toBe('C1 01 C3 00 47 00 00 11 00 00 FF 04 00 06 FF FF FF FF');
    expect(hex(encodeRequest({ kind: 'set', invokeId: 4, attribute: limiterAttr(LimiterAttribute.minOverThresholdDuration), value: data.doubleLongUnsigned(60) }))).toBe('C1 01 C4 00 47 00 00 11 00 00 FF 06 00 06 00 00 00 3C');
  });

  it('monitored_value (value_definition) and actions (two action_items) as A-XDR', () => {
    // structure(3) { long-unsigned 3, octet-string 0100010700FF, integer 2 }
    expect(hex(encodeData(valueDefinition(3, OBIS.activePowerImport, 2)))).toBe('02 03 12 00 03 09 06 01 00 01 07 00 FF 0F 02');
    // structure(2) { structure(2) { octet-string 00000A006AFF, long-unsigned 1 }, … selector 2 }
    expect(hex(encodeData(data.structure(actionItem(OBIS.disconnectScriptTable, 1), actionItem(OBIS.disconnectScriptTable, 2))))).toBe(
      '02 02 02 02 09 06 00 00 0A 00 6A FF 12 00 01 02 02 09 06 00 00 0A 00 6A FF 12 00 02',
    );
  });
});

describe('threshold codec', () => {
  const deciwatts = { type: 'long-unsigned' as const, scaler: 1, noLimitValue: 0xffff };

  it('scales by the register scaler both ways: 2500 W is 250 at scaler 1; 1500 W is 15000 at scaler -1', () => {
    expect(encodeThreshold(deciwatts, 2500)).toEqual({ type: 'long-unsigned', value: 250 });
    expect(decodeThreshold(deciwatts, data.longUnsigned(250))).toBe(2500);
    const tenths = { type: 'double-long-unsigned' as const, scaler: -1, noLimitValue: 0xffffffff };
    expect(encodeThreshold(tenths, 1500)).toEqual({ type: 'double-long-unsigned', value: 15000 });
    expect(decodeThreshold(tenths, data.doubleLongUnsigned(15003))).toBe(1500.3);
  });

  it('refuses, in words, a limit the threshold cannot hold', () => {
    expect(encodeThreshold(deciwatts, 1234)).toMatch(/not a whole number of the limiter's units \(10\^1 W\)/);
    expect(encodeThreshold(deciwatts, 700_000)).toMatch(/does not fit the limiter's threshold type long-unsigned/);
    expect(encodeThreshold(deciwatts, -5)).toMatch(/0 or more/);
    expect(encodeThreshold(deciwatts, Number.NaN)).toMatch(/0 or more/);
    expect(encodeThreshold(WATTS, 0xffffffff)).toMatch(/means "no limit".*remove the limit instead/);
  });

  it('a threshold of another type than the profile says is named', () => {
    expect(decodeThreshold(WATTS, data.longUnsigned(5))).toBe('threshold must be double-long-unsigned as the profile says, got long-unsigned');
  });
});

describe('profile dlms.limiter', () => {
  const base = { clientSap: 1, security: 'lowest', baudRate: 9600, controlMode: 2, hdlc: {} };

  it('defaults: 0-0:17.0.0.255, threshold_normal, double-long-unsigned watts, scaler 0, no limit = 0xFFFFFFFF', () => {
    const p = DlmsProfileSchema.parse({ ...base, limiter: {} });
    expect(p.limiter).toEqual({ logicalName: '0-0:17.0.0.255', threshold: 'normal', type: 'double-long-unsigned', scaler: 0 });
    expect(thresholdEncoding(p.limiter!)).toEqual({ type: 'double-long-unsigned', scaler: 0, noLimitValue: 0xffffffff });
    expect(DlmsProfileSchema.parse(base).limiter).toBeUndefined();
  });

  it('refuses an impossible limiter with a message naming the field', () => {
    const issues = (limiter: unknown) => {
      const r = DlmsProfileSchema.safeParse({ ...base, limiter });
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issues({ type: 'long-unsigned', noLimitValue: 70000 })).toEqual(['limiter.noLimitValue: noLimitValue 70000 does not fit the threshold type long-unsigned (0..65535)']);
    expect(issues({ threshold: 'emergency' })[0]).toMatch(/^limiter\.threshold:/);
    expect(issues({ type: 'float32' })[0]).toMatch(/^limiter\.type:/);
    expect(issues({ logicalName: '17.0.0' })[0]).toMatch(/^limiter\.logicalName: an OBIS code/);
    expect(issues({ minOverThresholdDurationS: -1 })[0]).toMatch(/^limiter\.minOverThresholdDurationS:/);
    expect(issues({ scaler: 0, extra: 1 })[0]).toMatch(/extra/);
  });
});

describe('the simulated meter serves every Limiter attribute with its type', () => {
  it('attributes 1-11 over a lowest-security association', async () => {
    const meter = new SimulatedMeter({ id: 'LIM-1', remoteReconnect: 'closes', now: Date.now });
    meter.setLoadLimit(4200);
    const sim = new DlmsSimMeter({ meter, physicalAddress: 1, controlMode: 2 });
    // The simulated meter's answers, straight from its COSEM side (no link: this checks the object, not the transport).
    const cosem = new CosemClient({ request: async (apdu) => stripLlc(LLC_RESPONSE, sim.answer(apdu, Date.now())!.info)! }, 'sim');
    await cosem.associate({ mechanism: 'lowest', maxPduSize: 1024 });
    const get = (a: number) => cosem.get(limiterAttr(a));
    expect(await get(LimiterAttribute.logicalName)).toEqual(data.octetString(Uint8Array.from([0, 0, 17, 0, 0, 255])));
    expect(await get(LimiterAttribute.monitoredValue)).toEqual(valueDefinition(3, OBIS.activePowerImport, 2));
    expect(await get(LimiterAttribute.thresholdActive)).toEqual(data.doubleLongUnsigned(4200));
    expect(await get(LimiterAttribute.thresholdNormal)).toEqual(data.doubleLongUnsigned(4200));
    expect(await get(LimiterAttribute.thresholdEmergency)).toEqual(data.doubleLongUnsigned(0xffffffff));
    expect((await get(LimiterAttribute.minOverThresholdDuration)).type).toBe('double-long-unsigned');
    expect((await get(LimiterAttribute.minUnderThresholdDuration)).type).toBe('double-long-unsigned');
    const profile = await get(LimiterAttribute.emergencyProfile);
    expect(profile.type === 'structure' && profile.items.map((i) => i.type)).toEqual(['long-unsigned', 'octet-string', 'double-long-unsigned']);
    expect(await get(LimiterAttribute.emergencyProfileGroupIdList)).toEqual(data.array());
    expect(await get(LimiterAttribute.emergencyProfileActive)).toEqual(data.boolean(false));
    expect(await get(LimiterAttribute.actions)).toEqual(data.structure(actionItem(OBIS.disconnectScriptTable, 1), actionItem(OBIS.disconnectScriptTable, 2)));
    await expect(get(12)).rejects.toThrow(/object-undefined/);
    // Only threshold_normal and min_over_threshold_duration are writable; a wrong type is type-unmatched.
    await expect(cosem.set(limiterAttr(LimiterAttribute.thresholdActive), data.doubleLongUnsigned(1))).rejects.toThrow(/read-write-denied/);
    await expect(cosem.set(limiterAttr(LimiterAttribute.thresholdNormal), data.longUnsigned(1))).rejects.toThrow(/type-unmatched/);
    expect(meter.loadLimitW).toBe(4200);
  });
});
