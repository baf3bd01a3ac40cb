import { describe, expect, it } from 'vitest';
import { encodeAarq, CLIENT_CONFORMANCE, decodeAare } from '../../drivers/dlms/acse-apdu.js';
import { data } from '../../drivers/dlms/axdr.js';
import { CLOCK_TIME, encodeDateTime } from '../../drivers/dlms/cosem/clock.js';
import { DISCONNECT_CONTROL, METHOD_PARAMETER } from '../../drivers/dlms/cosem/disconnect-control.js';
import { LLC_RESPONSE, stripLlc } from '../../drivers/dlms/llc.js';
import { AccessResult, decodeResponse, encodeRequest } from '../../drivers/dlms/xdlms-apdu.js';
import { SimulatedMeter } from '../../simulators/meter-model.js';
import { DlmsSimMeter } from '../../simulators/dlms-meter.js';
import type { ControlMode } from '../../drivers/dlms/cosem/disconnect-control.js';

/** The COSEM side of the simulated meter, APDU in → APDU out, without a link. */
function sim(controlMode: ControlMode, initialRelay: SimulatedMeter['relay'] = 'disconnected') {
  const closes = controlMode === 0 || controlMode === 2 || controlMode === 4;
  const meter = new SimulatedMeter({ id: `M${controlMode}`, remoteReconnect: closes ? 'closes' : 'arms', now: Date.now, initialRelay });
  const cosem = new DlmsSimMeter({ meter, physicalAddress: 17, controlMode, password: 'pw' });
  const ask = (apdu: Uint8Array) => {
    const a = cosem.answer(apdu, Date.now());
    return a ? stripLlc(LLC_RESPONSE, a.info)! : undefined;
  };
  const associate = () => decodeAare(ask(encodeAarq({ mechanism: 'low', password: Buffer.from('pw'), conformance: CLIENT_CONFORMANCE, maxPduSize: 1024 }))!);
  return { meter, cosem, ask, associate };
}

describe('DlmsSimMeter', () => {
  it('every control mode: remote_reconnect from disconnected ends connected (modes 2, 4) or ready_for_reconnection (1, 3, 5, 6)', () => {
    for (const mode of [1, 2, 3, 4, 5, 6] as const) {
      const s = sim(mode);
      expect(s.associate().result).toBe(0);
      const res = decodeResponse(s.ask(encodeRequest({ kind: 'action', invokeId: 1, method: DISCONNECT_CONTROL.remoteReconnect, parameter: METHOD_PARAMETER }))!);
      expect(res).toEqual({ kind: 'action', invokeId: 1, result: AccessResult.success });
      expect(s.meter.relay).toBe(mode === 2 || mode === 4 ? 'connected' : 'armed');
    }
  });

  it('mode 0 refuses the methods; a wrong password is refused with authentication-failure', () => {
    const s = sim(0, 'connected');
    s.associate();
    const res = decodeResponse(s.ask(encodeRequest({ kind: 'action', invokeId: 1, method: DISCONNECT_CONTROL.remoteDisconnect, parameter: METHOD_PARAMETER }))!);
    expect(res).toMatchObject({ result: AccessResult.objectUnavailable });
    expect(s.meter.relay).toBe('connected');
    s.cosem.password = 'other';
    expect(s.associate()).toMatchObject({ result: 1, diagnostic: 13 });
  });

  it('the button closes an armed relay (transition e), and the next association reads connected', () => {
    const s = sim(1);
    s.associate();
    s.ask(encodeRequest({ kind: 'action', invokeId: 1, method: DISCONNECT_CONTROL.remoteReconnect, parameter: METHOD_PARAMETER }));
    expect(s.meter.pressButton()).toBe(true);
    s.cosem.resetLink();
    s.associate();
    const res = decodeResponse(s.ask(encodeRequest({ kind: 'get', invokeId: 2, attribute: DISCONNECT_CONTROL.controlState }))!);
    expect(res).toEqual({ kind: 'get', invokeId: 2, result: { data: { type: 'enum', value: 1 } } });
  });

  it('SET of the clock is accepted; SET of control_mode is read-write-denied; nothing before AARQ', () => {
    const s = sim(2);
    expect(decodeResponse(s.ask(encodeRequest({ kind: 'get', invokeId: 1, attribute: DISCONNECT_CONTROL.controlMode }))!)).toMatchObject({ result: { error: AccessResult.readWriteDenied } });
    s.associate();
    expect(decodeResponse(s.ask(encodeRequest({ kind: 'set', invokeId: 2, attribute: CLOCK_TIME, value: data.octetString(encodeDateTime(Date.UTC(2030, 0, 1))) }))!)).toEqual({ kind: 'set', invokeId: 2, result: 0 });
    expect(decodeResponse(s.ask(encodeRequest({ kind: 'set', invokeId: 3, attribute: DISCONNECT_CONTROL.controlMode, value: data.enum(1) }))!)).toEqual({ kind: 'set', invokeId: 3, result: AccessResult.readWriteDenied });
  });
});
