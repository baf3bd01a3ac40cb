import { pino, type Logger } from 'pino';
import type { FirmwareProfile, ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { ModbusRegisterMap } from '../../src/domain/profiles/modbus-profile.js';
import type { SwitchAction } from '../../src/domain/relay.js';
import type { CommandAck, LimitAck, LinkHealth, MeterAddress, MeterDriver, RelayReading, RequestOptions, WireFailure, WireResult } from '../driver.js';
import { ModbusLinksConfigSchema, type ModbusLinksConfig, type ModbusLinksConfigInput } from './modbus-config.js';
import { MAX_UNIT_ID, MIN_UNIT_ID } from './modbus-codes.js';
import { exceptionVerdict, hex2 } from './modbus-exceptions.js';
import type { ModbusLink, ModbusLinkCounters, TransactionRequest } from './modbus-link.js';
import { claimFromEcho, closeRefusalRead, commandSteps, echoOf, loadLimitPdu, readingPlan, registerMapProblem, stepPdu, type ReadingPlan } from './register-map.js';
import { RtuLink } from './rtu-link.js';
import { TcpLink } from './tcp-link.js';

/**
 * The Modbus meter driver (RTU buses and TCP servers): turns "read the relay" and "disconnect / reconnect"
 * into the register reads and writes of the meter's firmware profile and reports what the wire said — an
 * echo is a claim, only a read-back is proof (the control loop decides). A meter's `address` is its unit
 * id in decimal, its `link` names a configured bus or TCP server. Exceptions become `nack` with a detail an
 * operator can act on (modbus-exceptions.ts); corruption is re-sent per frame by the link, then `garbled`.
 */

export interface ModbusDriverOptions {
  /** Connection settings per link name (validated with `ModbusLinksConfigSchema`). */
  links: ModbusLinksConfigInput;
  /** Firmware profiles; the Modbus ones are checked at construction (a bad register map stops start-up). */
  profiles: readonly FirmwareProfile[];
  logger?: Logger;
}

export interface ModbusLinkStatus extends ModbusLinkCounters {
  kind: 'rtu' | 'tcp';
  up: boolean;
  queued: number;
}

type Ctx = { meterId: string; link: string; unitId?: number; op: string; cid: string; orderId?: string; attempt?: number };

export class ModbusDriver implements MeterDriver {
  readonly protocol = 'modbus' as const;
  readonly config: ModbusLinksConfig;
  private readonly log: Logger;
  private readonly links = new Map<string, ModbusLink>();
  private readonly plans = new WeakMap<ModbusRegisterMap, ReadingPlan>();

  constructor(options: ModbusDriverOptions) {
    this.config = ModbusLinksConfigSchema.parse(options.links);
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ driver: 'modbus' });
    for (const p of options.profiles) {
      if (p.protocol !== 'modbus') continue;
      const problem = registerMapProblem(p.modbus, p.relay.remoteReconnect);
      if (problem) throw new Error(`firmware profile ${p.id}: modbus: ${problem}`);
    }
    for (const [name, c] of Object.entries(this.config.rtu)) this.links.set(name, new RtuLink(name, c, this.log.child({ link: name })));
    for (const [name, c] of Object.entries(this.config.tcp)) this.links.set(name, new TcpLink(name, c, this.log.child({ link: name })));
  }

  async start(): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => l.start()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => l.stop()));
  }

  isLinkUp(link: string): boolean {
    return this.links.get(link)?.isUp() ?? false;
  }

  /** Per-bus / per-connection counters: CRC errors, retries, timeouts, reopenings… */
  linkStatus(): Record<string, ModbusLinkStatus> {
    const out: Record<string, ModbusLinkStatus> = {};
    for (const [name, l] of this.links) out[name] = { ...l.counters, kind: l.kind, up: l.isUp(), queued: l.queued };
    return out;
  }

  /**
   * Each RTU bus and TCP gateway in the counters every driver shows: CRC errors, garbled frames (wrong unit or
   * function, bad length, noise), frames re-sent, timeouts, exceptions by code, reopens of a serial port and
   * reconnects of a TCP connection (every open after the first), answers for no waiting transaction id.
   */
  linkHealth(): LinkHealth[] {
    return [...this.links].map(([name, l]) => {
      const c = l.counters;
      const again = Math.max(0, c.opens - 1);
      return l.state.health(name, l.kind === 'rtu' ? 'modbus-rtu' : 'modbus-tcp', l.isUp(), {
        crcErrors: c.crcErrors,
        garbled: c.garbledFrames,
        frameRetries: c.retries,
        timeouts: c.timeouts,
        exceptions: c.exceptions,
        unknownCorrelationIds: c.unmatchedReplies,
        reopens: l.kind === 'rtu' ? again : 0,
        reconnects: l.kind === 'tcp' ? again : 0,
      });
    });
  }

  async readRelay(meter: MeterAddress, options: RequestOptions): Promise<WireResult<RelayReading>> {
    const pre = this.prepare(meter, 'read', options);
    if ('fail' in pre) return pre.fail;
    const { profile, link, unitId, ctx } = pre;
    const plan = this.planFor(profile.modbus);
    const answers = [];
    const evidence: string[] = [];
    let latencyMs = 0;
    for (const read of plan.reads) {
      const r = await link.transact(this.request(unitId, read.pdu, 'read', options, ctx));
      latencyMs += r.latencyMs;
      if (!r.ok) return this.failed(ctx, r.outcome, r.detail, [...evidence, ...(r.evidence ? [r.evidence] : [])], latencyMs);
      evidence.push(r.evidence);
      if (r.response.kind === 'exception') {
        const v = exceptionVerdict(r.response.code, read.pdu[0]!, read.address);
        return this.failed(ctx, v.outcome, v.detail, evidence, latencyMs);
      }
      answers.push(r.response);
    }
    const decoded = plan.decode(answers);
    if ('problem' in decoded) return this.failed(ctx, 'garbled', decoded.problem, evidence, latencyMs);
    const reading: RelayReading = { ...decoded, at: Date.now() };
    this.log.debug({ ...ctx, relay: reading.relay, latencyMs }, 'read');
    return { outcome: 'ok', value: reading, evidence: evidence.join(' '), latencyMs };
  }

  /**
   * Sends the profile's writes for `action` in order, waiting each step's `delayMs` after its answer (the bus is
   * free meanwhile). An exception at any step ends the command, naming the step. A close refused for voltage on
   * the load side (the profile's exception code or status bit, DOMAIN.md rule 14) is `load_side_voltage`.
   */
  async operateRelay(meter: MeterAddress, action: SwitchAction, options: RequestOptions): Promise<WireResult<CommandAck>> {
    const pre = this.prepare(meter, action, options);
    if ('fail' in pre) return pre.fail;
    const { profile, link, unitId, ctx } = pre;
    const map = profile.modbus;
    const steps = commandSteps(map, action);
    const evidence: string[] = [];
    let latencyMs = 0;
    for (const [i, step] of steps.entries()) {
      const pdu = stepPdu(step);
      const last = i === steps.length - 1;
      const named = (detail: string): string => (steps.length === 1 ? detail : `step ${i + 1} of ${steps.length} (function ${hex2(step.fc)} at address ${step.address}): ${detail}`);
      this.log.info({ ...ctx, step: i + 1, pdu: pdu.toString('hex') }, 'relay command');
      const r = await link.transact(this.request(unitId, pdu, 'command', options, ctx));
      latencyMs += r.latencyMs;
      if (!r.ok) return this.failed(ctx, r.outcome, named(r.detail), [...evidence, ...(r.evidence ? [r.evidence] : [])], latencyMs);
      evidence.push(r.evidence);
      if (r.response.kind === 'exception') {
        const refusal = last && action === 'reconnect' ? await this.closeRefused(map, r.response.code, link, unitId, options, ctx, evidence) : undefined;
        if (refusal) return this.failed(ctx, 'load_side_voltage', refusal, evidence, latencyMs);
        const v = exceptionVerdict(r.response.code, step.fc, step.address);
        return this.failed(ctx, v.outcome, named(v.detail), evidence, latencyMs);
      }
      if (r.response.kind !== 'echo') return this.failed(ctx, 'garbled', named(`a write was answered with ${r.response.kind}`), evidence, latencyMs);
      if (!last) {
        if (r.response.value !== echoOf(step)) return this.failed(ctx, 'garbled', named(`echoed 0x${r.response.value.toString(16)}, not the 0x${echoOf(step).toString(16)} written`), evidence, latencyMs);
        if (step.delayMs > 0) await new Promise((res) => setTimeout(res, step.delayMs));
        continue;
      }
      const claimed = claimFromEcho(map, profile.relay.remoteReconnect, action, r.response.value);
      if (claimed === undefined) return this.failed(ctx, 'garbled', `echoed value 0x${r.response.value.toString(16)} is not a relay command value of profile ${profile.id}`, evidence, latencyMs);
      if (action === 'reconnect') {
        const refusal = await this.closeRefused(map, undefined, link, unitId, options, ctx, evidence);
        if (refusal) return this.failed(ctx, 'load_side_voltage', refusal, evidence, latencyMs);
      }
      this.log.info({ ...ctx, claimed, latencyMs, tries: r.tries }, 'relay command acknowledged');
      return { outcome: 'ok', value: { claimedRelay: claimed }, evidence: evidence.join(' '), latencyMs };
    }
    throw new Error('unreachable: a relay command has at least one step');
  }

  /** Set (W) or remove (null) the demand limit through the profile's limit register; the read-back decides. */
  async setLoadLimit(meter: MeterAddress, limitW: number | null, options: RequestOptions): Promise<WireResult<LimitAck>> {
    const pre = this.prepare(meter, 'limit', options);
    if ('fail' in pre) return pre.fail;
    const { profile, link, unitId, ctx } = pre;
    const pdu = loadLimitPdu(profile.modbus, limitW);
    if ('problem' in pdu) return this.failed(ctx, 'nack', `profile error: ${profile.id}: ${pdu.problem}`, [], 0);
    this.log.info({ ...ctx, limitW, pdu: pdu.toString('hex') }, 'load limit command');
    const r = await link.transact(this.request(unitId, pdu, 'command', options, ctx));
    if (!r.ok) return this.failed(ctx, r.outcome, r.detail, r.evidence ? [r.evidence] : [], r.latencyMs);
    if (r.response.kind === 'exception') {
      const v = exceptionVerdict(r.response.code, pdu[0]!, profile.modbus.loadLimit!.address);
      return this.failed(ctx, v.outcome, v.detail, [r.evidence], r.latencyMs);
    }
    if (r.response.kind !== 'echo') return this.failed(ctx, 'garbled', `a write was answered with ${r.response.kind}`, [r.evidence], r.latencyMs);
    return { outcome: 'ok', value: { claimedLimitW: limitW }, evidence: r.evidence, latencyMs: r.latencyMs };
  }

  /**
   * Whether the device refused a close for voltage on its load side, as its profile says it reports one: the
   * exception code it answered, or its status bit read after the command. Returns the detail, or undefined.
   */
  private async closeRefused(map: ModbusRegisterMap, exception: number | undefined, link: ModbusLink, unitId: number, options: RequestOptions, ctx: Ctx, evidence: string[]): Promise<string | undefined> {
    const how = map.closeRefusal;
    if (!how) return undefined;
    if (exception !== undefined && exception === how.exceptionCode) return `close refused: voltage on the load side (exception ${hex2(exception)}); send a crew`;
    const read = closeRefusalRead(map);
    if (!read) return undefined;
    const r = await link.transact(this.request(unitId, read.pdu, 'command', options, ctx));
    if (!r.ok || r.response.kind !== 'registers') return undefined;
    evidence.push(r.evidence);
    return (r.response.words[0]! & how.statusBit!.mask) !== 0 ? `close refused: voltage on the load side (status register ${read.address} = 0x${r.response.words[0]!.toString(16)}); send a crew` : undefined;
  }

  private planFor(map: ModbusRegisterMap): ReadingPlan {
    let plan = this.plans.get(map);
    if (!plan) {
      plan = readingPlan(map);
      this.plans.set(map, plan);
    }
    return plan;
  }

  private request(unitId: number, pdu: Buffer, priority: 'read' | 'command', options: RequestOptions, ctx: Ctx): TransactionRequest {
    return { unitId, pdu, priority, timeoutMs: options.timeoutMs, log: this.log.child(ctx) };
  }

  private prepare(
    meter: MeterAddress,
    op: string,
    options: RequestOptions,
  ): { profile: ModbusFirmwareProfile; link: ModbusLink; unitId: number; ctx: Ctx } | { fail: WireResult<never> } {
    const profile = meter.profile;
    if (profile.protocol !== 'modbus') throw new Error(`ModbusDriver: meter ${meter.meterId} has ${profile.protocol} profile ${profile.id}`);
    const ctx: Ctx = { meterId: meter.meterId, link: meter.link, op, cid: options.correlationId };
    if (options.orderId !== undefined) ctx.orderId = options.orderId;
    if (options.attempt !== undefined) ctx.attempt = options.attempt;
    const link = this.links.get(meter.link);
    if (!link) return { fail: this.failed(ctx, 'link_error', `no Modbus link named "${meter.link}" is configured`, [], 0) };
    const unitId = parseUnitId(meter.address, link.kind);
    if (typeof unitId === 'string') return { fail: this.failed(ctx, 'nack', `profile error: meter ${meter.meterId}: ${unitId}`, [], 0) };
    ctx.unitId = unitId;
    const problem = registerMapProblem(profile.modbus, profile.relay.remoteReconnect);
    if (problem) return { fail: this.failed(ctx, 'nack', `profile error: ${profile.id}: ${problem}`, [], 0) };
    return { profile, link, unitId, ctx };
  }

  private failed(ctx: Ctx, outcome: WireFailure, detail: string, evidence: string[], latencyMs: number): WireResult<never> {
    const level = outcome === 'link_error' || outcome === 'garbled' ? 'warn' : 'info';
    this.log[level]({ ...ctx, outcome, detail, evidence: evidence.join(' ') || undefined }, 'request failed');
    return { outcome, detail, latencyMs, ...(evidence.length ? { evidence: evidence.join(' ') } : {}) };
  }
}

/** A unit id in decimal: 1–247 on a serial bus (Serial Line §2.2), 0–255 on TCP (the server decides). */
export function parseUnitId(address: string | null, kind: 'rtu' | 'tcp'): number | string {
  const [lo, hi] = kind === 'rtu' ? [MIN_UNIT_ID, MAX_UNIT_ID] : [0, 255];
  if (address === null || !/^\d{1,3}$/.test(address)) return `address ${JSON.stringify(address)} is not a Modbus unit id (decimal ${lo}–${hi})`;
  const n = Number(address);
  if (n < lo || n > hi) return `unit id ${n} is outside ${lo}–${hi}`;
  return n;
}
