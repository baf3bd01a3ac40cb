import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import type { ModbusFirmwareProfile } from '../src/domain/firmware-profile.js';
import type { RelayState } from '../src/domain/relay.js';
import { EXCEPTION_FLAG, ExceptionCode } from '../drivers/modbus/modbus-codes.js';
import { encodeMbap, MbapReader } from '../drivers/modbus/mbap-frame.js';
import { SimulatedMeter, type MeterFaults } from './meter-model.js';
import { ModbusSimDevice } from './modbus-device.js';

/**
 * A simulated Modbus TCP server (or TCP-to-RTU gateway) with many unit ids, each a `ModbusSimDevice` over a
 * `SimulatedMeter`: the same fault injection as every other simulator. Requests are answered independently
 * (after `serviceDelayMs`, plus any late-reply fault), so several can be in progress at once, told apart by
 * their MBAP transaction ids. A garbled answer is the meter's garbage bytes as the PDU of a well-formed
 * MBAP frame (a TCP stream does not corrupt; a device's firmware can). Unknown unit ids get exception 0x0B
 * (gateway target device failed to respond), as a gateway answers for a slave that is not there.
 */

export interface TcpServerDeviceSpec {
  unitId: number;
  meterId: string;
  profile: ModbusFirmwareProfile;
  initialRelay?: RelayState;
  /** The energy register at start (Wh), as on the RTU bus. Default 0. */
  initialEnergyWh?: number;
  faults?: Partial<MeterFaults>;
}

export interface ModbusTcpServerOptions {
  devices: readonly TcpServerDeviceSpec[];
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Time the server takes to answer each request (ms). Default 0. */
  serviceDelayMs?: number;
  now?: () => number;
  logger?: Logger;
}

export class ModbusTcpServer {
  readonly counters = { connections: 0, requests: 0, replies: 0, badStreams: 0, unknownUnit: 0, peakConcurrent: 0 };
  private readonly devices = new Map<number, ModbusSimDevice>();
  private readonly byMeter = new Map<string, ModbusSimDevice>();
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly log: Logger;
  private server: Server | undefined;
  private inProgress = 0;
  private boundPort = 0;

  constructor(private readonly options: ModbusTcpServerOptions) {
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ simulator: 'modbus-tcp' });
    const now = options.now ?? Date.now;
    for (const d of options.devices) {
      if (this.devices.has(d.unitId)) throw new Error(`unit id ${d.unitId} is used twice`);
      // A profile that says how the device reports a refused close describes a device that checks its load side.
      const meter = new SimulatedMeter({ id: d.meterId, remoteReconnect: d.profile.relay.remoteReconnect, checksLoadSide: d.profile.modbus.closeRefusal !== undefined, now, ...(d.initialRelay ? { initialRelay: d.initialRelay } : {}), ...(d.initialEnergyWh !== undefined ? { initialEnergyWh: d.initialEnergyWh } : {}), ...(d.faults ? { faults: d.faults } : {}) });
      const device = new ModbusSimDevice(d.unitId, meter, d.profile);
      this.devices.set(d.unitId, device);
      this.byMeter.set(d.meterId, device);
    }
  }

  get port(): number {
    return this.boundPort;
  }

  meter(meterId: string): SimulatedMeter {
    const d = this.byMeter.get(meterId);
    if (!d) throw new Error(`no simulated Modbus meter ${meterId} on this server`);
    return d.meter;
  }

  device(unitId: number): ModbusSimDevice {
    const d = this.devices.get(unitId);
    if (!d) throw new Error(`no simulated Modbus device with unit id ${unitId}`);
    return d;
  }

  async start(): Promise<void> {
    const server = createServer((socket) => this.onConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port ?? this.boundPort, this.options.host ?? '127.0.0.1', () => resolve());
    });
    this.boundPort = (server.address() as AddressInfo).port;
  }

  /** Close the listener and every connection (a gateway that went away); `start()` again reuses the port. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  dispose(): void {
    for (const d of this.devices.values()) d.meter.dispose();
  }

  private onConnection(socket: Socket): void {
    this.counters.connections++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const reader = new MbapReader();
    socket.on('data', (chunk: Buffer) => {
      const { adus, error } = reader.push(chunk);
      for (const adu of adus) this.onRequest(socket, adu.transactionId, adu.unitId, adu.pdu);
      if (error) {
        this.counters.badStreams++;
        this.log.warn({ error }, 'not Modbus TCP; closing the connection');
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }

  private onRequest(socket: Socket, tid: number, unitId: number, pdu: Buffer): void {
    this.counters.requests++;
    const device = this.devices.get(unitId);
    let body: Uint8Array;
    let delayMs = this.options.serviceDelayMs ?? 0;
    if (!device) {
      this.counters.unknownUnit++;
      body = Buffer.from([pdu[0]! | EXCEPTION_FLAG, ExceptionCode.GATEWAY_TARGET_FAILED_TO_RESPOND]);
    } else {
      const a = device.answer(pdu, (this.options.now ?? Date.now)());
      if (a.kind === 'silent') return;
      body = a.kind === 'pdu' ? a.pdu : a.bytes;
      delayMs += a.delayMs;
    }
    this.inProgress++;
    if (this.inProgress > this.counters.peakConcurrent) this.counters.peakConcurrent = this.inProgress;
    const send = (): void => {
      this.inProgress--;
      if (socket.destroyed) return;
      this.counters.replies++;
      socket.write(encodeMbap(tid, unitId, body));
    };
    if (delayMs <= 0) setImmediate(send);
    else {
      const t = setTimeout(() => {
        this.timers.delete(t);
        send();
      }, delayMs);
      this.timers.add(t);
    }
  }
}
