import type { Logger } from 'pino';
import type { MeterAddress, MeterDriver, WireResult, RelayReading, CommandAck, LimitAck, RequestOptions, WireFailure } from '../../drivers/driver.js';
import type { AttemptFacts } from '../domain/attempt-verdict.js';
import { decideAttempt, type AttemptJudgement } from '../domain/attempt-decision.js';
import { cannotFinishInTime, workOrderPlan, type EscalationPolicy } from '../domain/escalation.js';
import { DEFAULT_FLAGS, type MeterFlags } from '../domain/policy/meter-facts.js';
import { NO_LOAD_SIDE_CHECK, type FirmwareProfile } from '../domain/firmware-profile.js';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import type { PaymentRechecker } from '../integrations/billing-recheck.js';
import type { SwitchOrder } from '../domain/switch-order.js';
import type { DueOrder, GatewayStore, Lease, MeterView } from '../store/store.js';
import { sleep, type Clock } from './clock.js';
import { needsPreCloseRead, preCloseCheck } from './load-side-check.js';
import { listenToStatusReports } from './status-reports.js';
import { writeWhenStoreTakesIt } from './store-retry.js';
import { logAttemptEnd } from './order-log.js';
import { LazyChild, type LineLog } from './lazy-log.js';
import { DueBuffer } from './due-buffer.js';

export interface ControllerOptions {
  tickMs: number;
  linkConcurrency: number;
  links: Record<string, { concurrency: number }>;
  shutdownGraceMs: number;
  /** How long an order on the wire stays this instance's without a renewal; renewed every third of it. */
  leaseMs: number;
}

export interface ControllerDeps {
  store: GatewayStore;
  /** Drivers by protocol ('mqtt', later 'modbus', 'dlms'). */
  drivers: ReadonlyMap<string, MeterDriver>;
  profiles: ReadonlyMap<string, FirmwareProfile>;
  clock: Clock;
  logger: Logger;
  options: ControllerOptions;
  /** This instance's name: the owner of its leases. Unique per running instance, the same across its restarts. */
  instanceId: string;
  /** The disconnect rules, checked again right before every disconnect attempt. */
  policy: PolicyConfig;
  /** Rule 3: asks billing whether the account is still in arrears. */
  payments: PaymentRechecker;
  /** Rule 11: when a reconnect goes to the field (default: 8 h lead, due 1 h before the deadline). */
  escalation?: ControllerEscalation;
  random?: () => number;
  /** Called after every order state change the loop makes (metrics, callbacks, tests). */
  onOrderChange?: (order: SwitchOrder) => void;
  /** Called after every attempt with its outcome (time series, metrics). */
  onAttempt?: (attempt: AttemptRecord) => void;
  /** Called for every reading: read-backs, live reads and the meters' own status reports. */
  onReading?: (reading: ReadingRecord) => void;
  /** Called for every in-flight order taken over from an instance whose lease ran out. */
  onTakeover?: (order: SwitchOrder) => void;
  /** Called whenever a meter refuses the gateway's credentials (a command, a read-back or a read): counted per link. */
  onAuthFailure?: (refusal: { meterId: string; protocol: string; link: string }) => void;
  /** Called when a meter reports something its firmware profile contradicts (a DLMS control mode that arms under a profile that closes). */
  onProfileMismatch?: (mismatch: { meterId: string; profileId: string; field: 'remote_reconnect' }) => void;
}

export interface MeterContext {
  meterId: string;
  profileId: string;
  protocol: string;
  link: string;
  region: string;
}

export interface AttemptRecord extends MeterContext {
  orderId: string;
  action: SwitchOrder['action'];
  attempt: number;
  outcome: string;
  latencyMs: number;
  at: number;
  state: SwitchOrder['state'];
}

export interface ReadingRecord extends MeterContext {
  at: number;
  relay: RelayReading['relay'];
  voltageV: number | null;
  energyWh: number | null;
  source: 'read' | 'read_back' | 'status_report';
  /** Whether the meter was in prepayment mode with an agreement (read-backs: when the attempt began; status reports: when it came). */
  prepayment?: boolean;
}

/** A reading as the reading listeners get it (built field by field: one per verified order). */
function readingRecord(meterId: string, profile: { id: string; protocol: string }, link: string, region: string, value: RelayReading, source: ReadingRecord['source']): ReadingRecord {
  return {
    meterId,
    profileId: profile.id,
    protocol: profile.protocol,
    link,
    region,
    at: value.at,
    relay: value.relay,
    voltageV: value.voltageV ?? null,
    energyWh: value.energyWh ?? null,
    source,
  };
}

/**
 * A live read. `cause` when it failed: `busy` (an order attempt is on the wire to the meter; not tried),
 * `not_configured`, or what the wire said: `auth_failed` is a meter that answered and refused the gateway's
 * credentials, not a dead one.
 */
export type ReadNowResult =
  | { ok: true; reading: RelayReading }
  | { ok: false; cause: 'busy' | 'not_configured' | WireFailure; detail: string };

/** What the read-back showed, as an attempt's facts: the relay, and for a limit order the limit in force. */
function readFacts(read: WireResult<RelayReading> | undefined): Pick<AttemptFacts, 'readBack' | 'readBackLimitW'> {
  if (!read || read.outcome !== 'ok') return { readBack: undefined };
  return { readBack: read.value.relay, readBackLimitW: read.value.loadLimitW };
}

/**
 * An order's command on the wire: a relay operation, or the meter's demand limit (DOMAIN.md rule 10). A driver
 * without `setLoadLimit` cannot carry a limit: the attempt ends `nack` (admission refuses such meters before).
 */
function sendCommand(driver: MeterDriver, address: MeterAddress, order: SwitchOrder, options: RequestOptions): Promise<WireResult<CommandAck | LimitAck>> {
  if (order.action !== 'limit') return driver.operateRelay(address, order.action, options);
  if (!driver.setLoadLimit) return Promise.resolve({ outcome: 'nack', detail: `the ${driver.protocol} driver cannot set a load limit`, latencyMs: 0 });
  return driver.setLoadLimit(address, order.limitW, options);
}

/** The refusal facts of an attempt: where the meter refused the gateway's credentials, in the driver's words. */
function refusal(command: WireResult<CommandAck | LimitAck> | undefined, read: WireResult<RelayReading> | undefined): Pick<AttemptFacts, 'credentialsRefused'> {
  if (command && command.outcome === 'auth_failed') return { credentialsRefused: command.detail };
  if (read && read.outcome === 'auth_failed') return { credentialsRefused: `read-back: ${read.detail}` };
  return NO_REFUSAL;
}
/** No refusal: one shared empty object, not one per attempt (only read and spread). */
const NO_REFUSAL: Pick<AttemptFacts, 'credentialsRefused'> = Object.freeze({});

/** What went wrong on the wire, as the attempt's detail ('' when nothing did: no array per attempt, issue 19). */
function attemptDetail(command: WireResult<CommandAck | LimitAck> | undefined, read: WireResult<RelayReading> | undefined): string {
  const commandPart = command && command.outcome !== 'ok' ? `command: ${command.outcome} (${command.detail})` : '';
  const readPart = read && read.outcome !== 'ok' ? `read-back: ${read.outcome} (${read.detail})` : '';
  return commandPart && readPart ? `${commandPart}; ${readPart}` : commandPart || readPart;
}

export type ControllerEscalation = Omit<EscalationPolicy, 'fieldLeadMs'> & { fieldLeadMs: (region: string) => number; maxFieldLeadMs: number; scanEveryMs: number };

export const DEFAULT_ESCALATION: ControllerEscalation = {
  fieldLeadMs: () => 8 * 3_600_000,
  maxFieldLeadMs: 8 * 3_600_000,
  dueMarginMs: 3_600_000,
  slowRetryMs: 30 * 60_000,
  escalateDisconnects: false,
  scanEveryMs: 60_000,
};

/** How many due orders one query fetches. */
const FETCH_BATCH = 500;
/** How long a fetched batch of due orders is used before it is fetched afresh (retries come due, priorities change). */
const DUE_REFRESH_MS = 1000;
/** How many orphaned in-flight orders one claim takes over. */
const CLAIM_BATCH = 500;

/**
 * The control loop: drives each meter's observed relay state to the desired one, level-triggered like a
 * Kubernetes controller. It takes due orders from the store, leases them (queued → in_flight, committed
 * before anything is sent), sends one command per meter through the meter's driver within a per-link
 * window, reads the relay back, and records the verdict. After a crash it first verifies, by a read, every
 * order that was left in flight; it never re-sends blindly.
 *
 * Several instances share one store: each order on the wire is leased to one instance, which renews its
 * leases while it lives. An instance that dies (or loses the store) stops renewing; once its leases run out
 * any instance takes those orders over and verifies them by a read. An instance never sends a command on a
 * lease that could run out before the command's timeout.
 */
export class SwitchController {
  private readonly active = new Map<string, number>();
  /** The driver behind each link seen so far, to leave a down link's orders queued. */
  private readonly linkDrivers = new Map<string, MeterDriver>();
  private readonly running = new Set<Promise<void>>();
  /** Disconnects between the gate and their lease (the billing hook may take a while). */
  private readonly gating = new Set<string>();
  /** Meters with an attempt on the wire: nothing else is sent to them meanwhile. */
  private readonly busyMeters = new Set<string>();
  /** Orders this instance has on the wire, and until when (by its own clock) each lease is known to hold. */
  private readonly leases = new Map<string, number>();
  /**
   * Orders left in flight (a crash, a lapsed lease) whose link is down: leased here and kept, not read yet. Reading
   * now would only fail and spend an attempt; they are verified by a read once their link is back.
   */
  private readonly unverified = new Map<string, { order: SwitchOrder; link: string; driver: MeterDriver }>();
  private leaseTimer: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** Due orders fetched (or admitted) and not yet started (their links were full), most urgent first. */
  private readonly due = new DueBuffer();
  private wakeAgain = false;
  /** The loop's timer is armed with no delay (a tick is coming at once). */
  private tickSoon = false;
  private stopping = false;
  private started = false;
  private loopRunning_ = false;
  private readonly random: () => number;
  private readonly escalation: ControllerEscalation;

  constructor(private readonly deps: ControllerDeps) {
    this.random = deps.random ?? Math.random;
    this.escalation = deps.escalation ?? DEFAULT_ESCALATION;
  }

  /** Verify orders a crash left in flight, then start the loop. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    listenToStatusReports(this.deps);
    // Leases are renewed (and others' run-out ones taken over) from the start, recovery included.
    this.leaseTimer = setInterval(() => void this.keepLeases().catch((err: unknown) => this.deps.logger.error({ err }, 'lease renewal or takeover failed')), Math.max(100, Math.floor(this.deps.options.leaseMs / 3)));
    await this.recover();
    // Held disconnects are looked at again now: the calendar, caps or windows may have changed while stopped (a
    // holiday removed from the configuration takes effect at once, not when the old hold would have ended).
    const woken = await this.deps.store.wakeHeldDisconnects({}, this.deps.clock.now());
    if (woken > 0) this.deps.logger.info({ count: woken }, 'held disconnects looked at again under the current policy');
    this.schedule(0);
    this.deadlineTimer = setInterval(() => void this.escalateLateReconnects().catch((err: unknown) => this.deps.logger.error({ err }, 'deadline scan failed')), this.escalation.scanEveryMs);
    this.loopRunning_ = !this.stopping;
  }

  /** Started (recovery done) and not stopping: the loop takes orders. */
  get loopRunning(): boolean {
    return this.loopRunning_;
  }

  private policyFor(region: string): EscalationPolicy {
    const e = this.escalation;
    return { fieldLeadMs: e.fieldLeadMs(region), dueMarginMs: e.dueMarginMs, slowRetryMs: e.slowRetryMs, escalateDisconnects: e.escalateDisconnects };
  }

  /**
   * Reconnects that can no longer finish remotely before `deadline − field lead time` get their work order now,
   * not when their attempts run out (DOMAIN.md rule 11).
   */
  async escalateLateReconnects(): Promise<number> {
    const now = this.deps.clock.now();
    // The longest lead any region has bounds the scan; each order is then checked against its own region's.
    const horizon = now + this.escalation.maxFieldLeadMs;
    let raised = 0;
    for (const order of await this.deps.store.reconnectsNearDeadline(horizon, 1000)) {
      const meter = await this.deps.store.getMeter(order.meterId);
      if (!meter) continue;
      const policy = this.policyFor(meter.region);
      if (!cannotFinishInTime(order, now, policy)) continue;
      const left = Math.max(0, Math.round(((order.deadline ?? now) - now) / 60_000));
      const plan = workOrderPlan(order, meter.flags, now, policy, `cannot finish remotely in time: ${left} min left before the deadline, the crew needs ${Math.round(policy.fieldLeadMs / 60_000)} min`);
      const done = await this.deps.store.escalateOrder(order.id, now, plan, now + policy.slowRetryMs);
      if (done) {
        raised++;
        this.deps.logger.warn({ meterId: order.meterId, orderId: order.id, workOrderId: done.workOrder.id, dueAt: new Date(done.workOrder.dueAt).toISOString() }, 'reconnect escalated to the field');
        this.deps.onOrderChange?.(done.order);
      }
    }
    return raised;
  }

  /**
   * Stop taking orders; wait (up to the grace period) for attempts on the wire. Unfinished ones stay in flight for
   * the next start (or another instance) to verify by a read. Logs how many were on the wire and how many were left.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.loopRunning_ = false;
    if (this.timer) clearTimeout(this.timer);
    this.tickSoon = false;
    if (this.deadlineTimer) clearInterval(this.deadlineTimer);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    const onWire = this.leases.size - this.unverified.size;
    const graceMs = this.deps.options.shutdownGraceMs;
    const log = this.deps.logger;
    if (onWire > 0) log.info({ onWire, graceMs }, 'stopping the control loop: no new attempts; waiting for the attempts on the wire');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running]), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    this.unverified.clear();
    // Attempts still on the wire after the grace period: let their leases run out now, so that another instance
    // verifies them at once instead of a lease's time later.
    const left = [...this.leases.keys()];
    if (left.length > 0) {
      await this.deps.store.renewLeases({ owner: this.deps.instanceId, until: this.deps.clock.now() - 1 }, left).catch(() => undefined);
      log.warn({ onWire, left: left.length, graceMs }, 'control loop stopped with orders still in flight after the grace period: their leases were ended; the next start (or another instance) verifies each by a read');
    } else if (onWire > 0) {
      log.info({ onWire }, 'control loop stopped: every attempt that was on the wire finished and was recorded');
    }
  }

  private newLease(now: number): Lease {
    return { owner: this.deps.instanceId, until: now + this.deps.options.leaseMs };
  }

  /**
   * Renew the leases of the orders on the wire here, then take over orders whose lease ran out elsewhere (an
   * instance died) or here (a renewal failed long enough): each is verified by a read, never re-sent blindly.
   */
  async keepLeases(): Promise<void> {
    if (this.stopping) return;
    const ids = [...this.leases.keys()];
    if (ids.length > 0) {
      const lease = this.newLease(this.deps.clock.now());
      await this.deps.store.renewLeases(lease, ids);
      for (const id of ids) if (this.leases.has(id)) this.leases.set(id, lease.until);
    }
    for (;;) {
      const now = this.deps.clock.now();
      const lease = this.newLease(now);
      const orphans = await this.deps.store.claimOrphans(lease, now, CLAIM_BATCH, false);
      for (const o of orphans) {
        if (this.leases.has(o.id)) {
          this.leases.set(o.id, lease.until); // ours and still on the wire here: the claim renewed it
          continue;
        }
        this.deps.logger.warn({ meterId: o.meterId, orderId: o.id, attempt: o.attempts }, 'took over an in-flight order whose lease ran out; verifying it by a read');
        this.deps.onTakeover?.(o);
        this.leases.set(o.id, lease.until);
        this.launch(o.link, () => this.verifyOrphan(o));
      }
      if (orphans.length < CLAIM_BATCH || this.stopping) return;
    }
  }

  /**
   * Look for work now. `admitted`: the orders an admission just created (submitOrders' created ones, in its order):
   * they join the fetched due batch where the due query would have put them, and what they supersede leaves it
   * (DueBuffer). Without them (a meter's facts, an approval, billing, the admin: anything that may change what is
   * due or how it ranks) the batch is dropped and fetched afresh.
   */
  wake(admitted?: readonly SwitchOrder[]): void {
    if (admitted) this.due.admit(admitted, this.deps.clock.now());
    else this.due.clear();
    this.wakeSoon();
  }

  /** Look for work now (a slot came free). */
  private wakeSoon(): void {
    if (this.stopping || !this.started) return;
    if (this.ticking) {
      this.wakeAgain = true;
      return;
    }
    this.schedule(0);
  }

  /** Attempts on the wire right now, per link. */
  inFlightByLink(): Record<string, number> {
    return Object.fromEntries(this.active);
  }

  private capacity(link: string): number {
    return this.deps.options.links[link]?.concurrency ?? this.deps.options.linkConcurrency;
  }

  private schedule(ms: number): void {
    if (this.stopping) return;
    // A tick already due at once stays: re-arming it (a timer per finished attempt) changes nothing but costs.
    if (ms === 0 && this.tickSoon) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (ms === 0) {
      // At once: in this turn's check phase, not a timer's (a setTimeout of 0 waits at least 1 ms, per admission and
      // per freed slot). The armed timer, if any, was cleared above; the tick re-arms it.
      this.tickSoon = true;
      setImmediate(() => {
        if (!this.tickSoon) return; // stop() came first
        this.tickSoon = false;
        void this.tick();
      });
      return;
    }
    this.tickSoon = false;
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopping || this.ticking) return;
    this.ticking = true;
    this.wakeAgain = false;
    try {
      this.verifyWhereLinksAreBack();
      for (;;) {
        const saturated: string[] = [];
        for (const [link, n] of this.active) if (n >= this.capacity(link)) saturated.push(link);
        // A link that is down, or whose driver already has requests waiting for its window, takes no more leases now.
        for (const [link, driver] of this.linkDrivers) if (!driver.isLinkUp(link) || driver.hasBacklog?.(link)) saturated.push(link);
        // Due orders come a batch at a time and wait here for free slots. A batch older than DUE_REFRESH_MS is fetched
        // afresh (submissions add their orders to it, other wakes drop it: see wake()); when it has nothing for the
        // links with room, the orders of those links are fetched and added.
        const now = this.deps.clock.now();
        let fresh = false;
        // An empty batch is fetched again only if it may lack due orders of a link with room, or once a tick (retries
        // and ends of holds come due by the clock): not on every wake and every freed slot (issue 19).
        const emptyMayLack = this.due.orders.length === 0 && this.due.mayLack(saturated, now, this.deps.options.tickMs);
        if (!this.due.valid || emptyMayLack || now - this.due.fetchedAt > Math.max(this.deps.options.tickMs, DUE_REFRESH_MS)) {
          this.due.fetching();
          this.due.replace(await this.deps.store.dueOrders(now, FETCH_BATCH, saturated), now, saturated, FETCH_BATCH);
          fresh = true;
        }
        if (this.due.orders.length === 0) break;
        let pick = this.pickDue(saturated);
        // Nothing to start from the batch: fetch the links it holds nothing for, if it may lack orders of theirs (or
        // once a tick, for what became due since), not on every wake (issue 19: a due query per admission).
        const moreDue = this.due.mayLack(saturated, now, this.deps.options.tickMs);
        if (pick.chosen.length + pick.disconnects.length === 0 && !fresh && moreDue) {
          const excluded = [...saturated, ...new Set(this.due.orders.map((o) => o.link))];
          this.due.fetching();
          this.due.add(await this.deps.store.dueOrders(now, FETCH_BATCH, excluded), now, excluded, FETCH_BATCH);
          pick = this.pickDue(saturated);
        }
        const { chosen, disconnects } = pick;
        if (chosen.length + disconnects.length === 0) break;
        // Disconnects pass the policy gate (and the billing re-check) before they are leased.
        for (const o of disconnects) {
          this.gating.add(o.id);
          this.launch(o.link, () => this.dispatchDisconnect(o).finally(() => this.gating.delete(o.id)));
        }
        const lease = this.newLease(this.deps.clock.now());
        // Each chosen order's meter is asked for in the same turn as the lease (one message to the store's thread, one
        // answer), so that an attempt does not wait for a round trip of its own before its command. Nothing is sent
        // before the lease is committed: the attempts start only once beginAttempts has answered.
        const begun = chosen.length > 0 ? this.deps.store.beginAttempts(chosen, this.deps.clock.now(), lease) : undefined;
        const meters = this.askMeters(pick.chosenMeters);
        const taken = begun ? await begun : [];
        if (taken.length < chosen.length) this.due.clear(); // another instance took some (or they were superseded): the rest of the batch is stale, fetch afresh
        for (const order of taken) {
          this.leases.set(order.id, lease.until);
          this.deps.onOrderChange?.(order);
          const meter = meters.get(order.meterId);
          this.launch(order.link, () => this.runAttempt(order, meter));
        }
        if (this.stopping || taken.length + disconnects.length === 0) break;
      }
    } catch (err) {
      this.due.clear();
      this.deps.logger.error({ err }, 'control loop tick failed; retrying on the next tick');
    } finally {
      this.ticking = false;
      this.schedule(this.wakeAgain ? 0 : this.deps.options.tickMs);
    }
  }

  /** Orders left in flight whose link was down: verify them now where the link is back. */
  private verifyWhereLinksAreBack(): void {
    for (const [id, { order, link, driver }] of this.unverified) {
      if (!driver.isLinkUp(link)) continue;
      this.unverified.delete(id);
      this.launch(link, () => this.verifyOrphan(order));
    }
  }

  /**
   * Take from the fetched due orders what can start now: links with room, one order per meter, none for a meter
   * with an attempt on the wire (those are dropped: they come back in a later fetch). The rest stay for later.
   */
  private pickDue(saturated: readonly string[]): { chosen: string[]; chosenMeters: string[]; disconnects: DueOrder[] } {
    const chosen: string[] = [];
    const chosenMeters: string[] = [];
    const disconnects: DueOrder[] = [];
    // Free slots per link for this pick (0: saturated or full), worked out once per link rather than per order.
    const room = new Map<string, number>();
    for (const link of saturated) room.set(link, 0);
    const meters = new Set<string>();
    const waiting: DueOrder[] = [];
    for (const o of this.due.orders) {
      if (this.gating.has(o.id)) continue;
      if (this.busyMeters.has(o.meterId) || meters.has(o.meterId)) {
        // Dropped, though it may be due again soon: the batch no longer holds all of its link's due orders.
        this.due.missing(o.link);
        continue;
      }
      let free = room.get(o.link);
      if (free === undefined) {
        free = this.capacity(o.link) - (this.active.get(o.link) ?? 0);
        room.set(o.link, free);
      }
      if (free <= 0) {
        waiting.push(o);
        continue;
      }
      room.set(o.link, free - 1);
      meters.add(o.meterId);
      // Disconnects and limits pass the gate again right before the wire (a limit: protected mode and protected
      // customers may have changed since it was admitted); reconnects are never held (rule 12).
      if (o.action === 'reconnect') {
        chosen.push(o.id);
        chosenMeters.push(o.meterId);
      } else disconnects.push(o);
    }
    this.due.orders = waiting;
    return { chosen, chosenMeters, disconnects };
  }

  private launch(link: string, work: () => Promise<void>): void {
    this.active.set(link, (this.active.get(link) ?? 0) + 1);
    const done = (): void => {
      const n = (this.active.get(link) ?? 1) - 1;
      if (n <= 0) this.active.delete(link);
      else this.active.set(link, n);
      this.running.delete(p);
      this.wakeSoon();
    };
    // One promise per attempt for the bookkeeping (a .catch().finally() chain made two).
    const p: Promise<void> = work().then(done, (err: unknown) => {
      this.deps.logger.error({ err, link }, 'attempt crashed');
      done();
    });
    this.running.add(p);
  }

  /**
   * A disconnect's last moment before the wire: the rules on fresh facts (a hold, refusal or second notice ends
   * here), the billing re-check for non-payment (paid cancels, unreachable holds), then an atomic re-check,
   * cap reservation and lease. Only a leased order is sent. Limit orders come this way too, for the limit rules.
   */
  private async dispatchDisconnect(order: DueOrder): Promise<void> {
    const log = this.deps.logger.child({ meterId: order.meterId, orderId: order.id });
    const { store, clock, policy } = this.deps;
    const gated = await store.gateDisconnect(order.id, clock.now(), policy);
    if (!gated.decision || gated.decision.verdict !== 'allow') {
      if (gated.decision) log.info({ verdict: gated.decision.verdict, state: gated.order.state, reason: gated.order.stateReason }, `${order.action} not sent now`);
      this.deps.onOrderChange?.(gated.order);
      return;
    }
    // Arrears: ask billing. A credit cut-off's balance is the gateway's own; a top-up has already cancelled it. A
    // limit is no cut: a payment lifts it (recordPayments), it is not re-checked.
    if (order.action === 'disconnect' && order.reason === 'arrears') {
      const answer = await this.deps.payments.check({ meterId: order.meterId, orderId: order.id, reason: order.reason });
      if (answer.kind !== 'in_arrears') {
        const now = clock.now();
        const after = await store.recordPaymentCheck(order.id, now, answer.kind, answer.detail, now + policy.paymentRecheck.retryAfterMs);
        log.info({ payment: answer.kind, state: after.state, reason: after.stateReason }, 'disconnect not sent: payment re-check');
        this.deps.onOrderChange?.(after);
        return;
      }
    }
    const held = this.newLease(clock.now());
    const lease = await store.leaseDisconnect(order.id, clock.now(), policy, held);
    if (!lease.leased) {
      this.deps.onOrderChange?.(lease.order);
      return;
    }
    this.leases.set(order.id, held.until);
    this.deps.onOrderChange?.(lease.leased);
    await this.runAttempt(lease.leased);
  }

  /**
   * The meters of orders about to be leased, asked for now (by meter id). A failed lookup is the attempt's to report
   * (addressOf); one whose order was not leased after all is dropped unread, so its failure is caught here.
   */
  private askMeters(meterIds: readonly string[]): Map<string, Promise<MeterView | undefined>> {
    const meters = new Map<string, Promise<MeterView | undefined>>();
    for (const meterId of meterIds) {
      const meter = this.deps.store.getMeter(meterId);
      meter.catch(() => undefined);
      meters.set(meterId, meter);
    }
    return meters;
  }

  private async addressOf(order: SwitchOrder, asked?: Promise<MeterView | undefined>): Promise<{ address: MeterAddress; driver: MeterDriver; flags: MeterFlags; region: string } | string> {
    const meter = await (asked ?? this.deps.store.getMeter(order.meterId));
    if (!meter) return `meter ${order.meterId} is no longer registered`;
    const profile = this.deps.profiles.get(meter.profileId);
    if (!profile) return `firmware profile ${meter.profileId} is not loaded`;
    const driver = this.deps.drivers.get(profile.protocol);
    if (!driver) return `no driver for protocol ${profile.protocol}`;
    return { address: { meterId: meter.meterId, profile, link: meter.link, address: meter.address ?? null }, driver, flags: meter.flags, region: meter.region };
  }

  /**
   * Read a meter now (the call centre's "is the customer on supply?"), unless an attempt is on the wire to it.
   * The reading is recorded as the meter's observed state.
   */
  async readNow(meterId: string): Promise<ReadNowResult> {
    if (this.busyMeters.has(meterId)) return { ok: false, cause: 'busy', detail: 'an order attempt is on the wire to this meter' };
    const meter = await this.deps.store.getMeter(meterId);
    const profile = meter ? this.deps.profiles.get(meter.profileId) : undefined;
    const driver = profile ? this.deps.drivers.get(profile.protocol) : undefined;
    if (!meter || !profile || !driver) return { ok: false, cause: 'not_configured', detail: 'the meter, its profile or its driver is not available' };
    if (!driver.isLinkUp(meter.link)) return { ok: false, cause: 'link_error', detail: `link ${meter.link} is down` };
    this.busyMeters.add(meterId);
    try {
      const read = await driver.readRelay(
        { meterId, profile, link: meter.link, address: meter.address ?? null },
        { timeoutMs: profile.timeouts.readMs, correlationId: `read:${meterId}:${this.deps.clock.now()}` },
      );
      if (read.outcome === 'auth_failed') {
        this.deps.logger.warn({ meterId, protocol: profile.protocol, link: meter.link, detail: read.detail }, "read refused: the meter refused the gateway's credentials");
        this.deps.onAuthFailure?.({ meterId, protocol: profile.protocol, link: meter.link });
      }
      if (read.outcome !== 'ok') return { ok: false, cause: read.outcome, detail: `${read.outcome}: ${read.detail}` };
      await this.deps.store.recordObservation(meterId, { relay: read.value.relay, at: read.value.at, source: 'read', voltageV: read.value.voltageV, energyWh: read.value.energyWh });
      this.deps.onReading?.(readingRecord(meterId, profile, meter.link, meter.region, read.value, 'read'));
      return { ok: true, reading: read.value };
    } finally {
      this.busyMeters.delete(meterId);
    }
  }

  /** One attempt: command, wait for the relay to operate, read back, record the verdict. */
  private runAttempt(order: SwitchOrder, meter?: Promise<MeterView | undefined>): Promise<void> {
    return this.onWire(order, () => this.runAttemptOnWire(order, meter));
  }

  /** Work on the wire for a leased order: nothing else goes to its meter meanwhile; the lease is dropped after. */
  private async onWire(order: SwitchOrder, work: () => Promise<void>): Promise<void> {
    this.busyMeters.add(order.meterId);
    try {
      await work();
    } finally {
      this.busyMeters.delete(order.meterId);
      this.leases.delete(order.id);
    }
  }

  /** The order, if this attempt's report (ended at `endedAt`) is already recorded: a try whose answer was lost landed. */
  private async completionLanded(order: SwitchOrder, endedAt: number): Promise<SwitchOrder | undefined> {
    const attempts = await this.deps.store.listAttempts(order.id);
    const mine = attempts.find((a) => a.attempt === order.attempts);
    return mine?.endedAt === endedAt ? this.deps.store.getOrder(order.id) : undefined;
  }

  /** The order, if this release is already recorded (queued again, the attempt given back, with this reason). */
  private async releaseLanded(order: SwitchOrder, reason: string): Promise<SwitchOrder | undefined> {
    const now = await this.deps.store.getOrder(order.id);
    return now?.state === 'queued' && now.attempts === order.attempts - 1 && now.stateReason === reason ? now : undefined;
  }

  /** `meter`: the meter's lookup when the loop asked for it with the lease (askMeters); otherwise it is looked up here. */
  private async runAttemptOnWire(order: SwitchOrder, meter?: Promise<MeterView | undefined>): Promise<void> {
    const log = new LazyChild(this.deps.logger, { meterId: order.meterId, orderId: order.id, attempt: order.attempts });
    const target = await this.addressOf(order, meter);
    if (typeof target === 'string') {
      log.error({ problem: target }, 'cannot address meter');
      await this.finish(order, log, undefined, { command: 'link_error', readBack: undefined }, undefined, undefined, target);
      return;
    }
    const { address, driver } = target;
    const { profile } = address;
    this.linkDrivers.set(address.link, driver);
    if (!driver.isLinkUp(address.link)) {
      // Nothing goes on the wire: give the lease back without spending an attempt; the order waits for the link.
      const reason = `not sent: link ${address.link} is down; waiting for it`;
      log.warn({ link: address.link }, reason);
      const released = await writeWhenStoreTakesIt(
        () => {
          const now = this.deps.clock.now();
          return this.deps.store.releaseAttempt(order.id, order.attempts, now, now + this.deps.options.tickMs, reason, this.deps.instanceId);
        },
        { logger: log, what: 'the release of an unsent attempt', landed: () => this.releaseLanded(order, reason) },
      );
      this.deps.onOrderChange?.(released);
      return;
    }
    // A command must land while this instance's lease holds; otherwise another instance may already be
    // verifying the order. Nothing is sent; the order is released (or, if the lease is gone, left to its new holder).
    const leaseLeft = (this.leases.get(order.id) ?? 0) - this.deps.clock.now();
    if (leaseLeft <= profile.timeouts.commandMs) {
      const reason = `not sent: the lease has ${Math.max(0, leaseLeft)} ms left, less than the command timeout`;
      log.warn({ leaseLeft }, reason);
      const now = this.deps.clock.now();
      const released = await this.deps.store.releaseAttempt(order.id, order.attempts, now, now + this.deps.options.tickMs, reason, this.deps.instanceId).catch(() => undefined);
      if (released) this.deps.onOrderChange?.(released);
      return;
    }
    if (needsPreCloseRead(order.action, profile)) {
      // Rule 14, the gateway's own check: read the load side first; a live one (or no reading of it) withholds the close.
      const before = await this.readBack(driver, address, order, 'load-side');
      const check = preCloseCheck(profile, before);
      if (!check.send) {
        const refused = refusal(undefined, before);
        if (refused.credentialsRefused !== undefined) this.countRefusal(target, order.meterId, log, refused.credentialsRefused);
        log.warn({ problem: check.problem }, 'close withheld by the load-side check');
        await this.finish(order, log, target, { ...check.facts, ...refused }, undefined, before, check.problem);
        return;
      }
    }
    if (log.isLevelEnabled('debug')) log.debug({ action: order.action, ...(order.action === 'limit' ? { limitW: order.limitW } : {}), link: address.link, profile: profile.id }, 'sending command');
    const command = await sendCommand(driver, address, order, {
      timeoutMs: profile.timeouts.commandMs,
      correlationId: `${order.id}:${order.attempts}:cmd`,
      orderId: order.id,
      attempt: order.attempts,
    });
    if (command.outcome === 'ok') await sleep(profile.relay.operateTimeMs);
    // A refused association refuses the read-back too (the same keys): it is not spent, as each refusal may count
    // towards the meter locking the client out. The command was not carried out; the order ends on the refusal.
    const read = command.outcome === 'auth_failed' ? undefined : await this.readBack(driver, address, order, 'read');
    const refused = refusal(command, read);
    if (refused.credentialsRefused !== undefined) this.countRefusal(target, order.meterId, log, refused.credentialsRefused);
    const meterRemoteReconnect = command.outcome === 'ok' && 'remoteReconnect' in command.value ? command.value.remoteReconnect : undefined;
    if (meterRemoteReconnect !== undefined && meterRemoteReconnect !== profile.relay.remoteReconnect) {
      // The meter decides; the profile it was registered under is wrong for it, which a person should correct.
      log.warn({ profile: profile.id, profileRemoteReconnect: profile.relay.remoteReconnect, meterRemoteReconnect }, 'the meter says its remote reconnect differs from its firmware profile');
      this.deps.onProfileMismatch?.({ meterId: order.meterId, profileId: profile.id, field: 'remote_reconnect' });
    }
    // The facts field by field (spreads of temporary objects per attempt cost: issue 19); the same keys as readFacts().
    const facts: AttemptFacts = { command: command.outcome, readBack: undefined };
    if (read && read.outcome === 'ok') {
      facts.readBack = read.value.relay;
      facts.readBackLimitW = read.value.loadLimitW;
      if (read.value.loadSideVoltageV !== undefined) facts.loadSideVoltageV = read.value.loadSideVoltageV;
    }
    if (meterRemoteReconnect) facts.meterRemoteReconnect = meterRemoteReconnect;
    if (refused.credentialsRefused !== undefined) facts.credentialsRefused = refused.credentialsRefused;
    await this.finish(order, log, target, facts, command, read, null);
  }

  /** The meter refused the gateway's credentials: counted per protocol and link, logged (the driver's words only). */
  private countRefusal(target: { address: MeterAddress }, meterId: string, log: LineLog, detail: string): void {
    const { protocol } = target.address.profile;
    log.warn({ protocol, link: target.address.link, detail }, "the meter refused the gateway's credentials");
    this.deps.onAuthFailure?.({ meterId, protocol, link: target.address.link });
  }

  private readBack(driver: MeterDriver, address: MeterAddress, order: SwitchOrder, tag: string): Promise<WireResult<RelayReading>> {
    return driver.readRelay(address, {
      timeoutMs: address.profile.timeouts.readMs,
      correlationId: `${order.id}:${order.attempts}:${tag}`,
      orderId: order.id,
      attempt: order.attempts,
    });
  }

  private async finish(
    order: SwitchOrder,
    log: LineLog,
    meter: { address: MeterAddress; flags: MeterFlags; region: string } | undefined,
    facts: AttemptFacts,
    command: WireResult<CommandAck | LimitAck> | undefined,
    read: WireResult<RelayReading> | undefined,
    problem: string | null,
  ): Promise<void> {
    // Without a profile nothing can be sent: one attempt, then failed, so a person looks at the meter's set-up.
    const rules = meter?.address.profile ?? { retry: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 }, relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK } };
    const escalation = this.policyFor(meter?.region ?? '*');
    const now = this.deps.clock.now();
    const detail = problem ?? attemptDetail(command, read);
    // The meter has acted: its result must be recorded. While the store cannot take writes (a full disk, a database
    // that is down) the write is retried and the order keeps its lease, so it ends as soon as writes go through.
    // Plain data, not a function: the store may run on its own thread (sqlite-worker-store.ts).
    const judgement: AttemptJudgement = { rules: { relay: rules.relay, retry: rules.retry }, facts, now, random: this.random(), flags: meter?.flags ?? DEFAULT_FLAGS, escalation };
    const updated = await writeWhenStoreTakesIt(() => this.deps.store.completeAttempt({
      orderId: order.id,
      attempt: order.attempts,
      leaseOwner: this.deps.instanceId,
      endedAt: now,
      latencyMs: command ? command.latencyMs : null,
      commandEvidence: command ? (command.outcome === 'ok' ? command.evidence : (command.evidence ?? null)) : null,
      readEvidence: read ? (read.outcome === 'ok' ? read.evidence : (read.evidence ?? null)) : null,
      observedRelay: facts.readBack ?? null,
      detail: detail || null,
      observation:
        read && read.outcome === 'ok'
          ? { relay: read.value.relay, at: read.value.at, source: 'read', voltageV: read.value.voltageV, energyWh: read.value.energyWh }
          : null,
      judgement,
    }), { logger: log, what: "the attempt's result", landed: () => this.completionLanded(order, now) });
    // The outcome is the attempt's alone (the command and the read-back against the action), whatever the order became.
    const outcome = decideAttempt(order, judgement).outcome;
    this.deps.onOrderChange?.(updated);
    // Superseded once off the wire: its successor (left out of the due batch while it waited) is due now.
    if (updated.supersededBy !== null) this.due.clear();
    if (meter) {
      // Literal records, not spreads of a shared context (one object each, per attempt: issue 19).
      const { profile, link } = meter.address;
      this.deps.onAttempt?.({
        meterId: order.meterId,
        profileId: profile.id,
        protocol: profile.protocol,
        link,
        region: meter.region,
        orderId: order.id,
        action: order.action,
        attempt: order.attempts,
        outcome,
        latencyMs: command?.latencyMs ?? 0,
        at: now,
        state: updated.state,
      });
      if (read && read.outcome === 'ok') {
        const prepayment = meter.flags.prepaymentMode && meter.flags.prepaymentAgreementRef !== null;
        const reading = readingRecord(order.meterId, profile, link, meter.region, read.value, 'read_back');
        reading.prepayment = prepayment;
        this.deps.onReading?.(reading);
      }
    }
    logAttemptEnd(log, order, updated, outcome, command?.latencyMs ?? null, now);
  }

  /**
   * Orders this instance left in flight (it crashed and restarted) and orders whose lease ran out elsewhere:
   * read the relay first; only what the read shows decides what happens next.
   */
  private async recover(): Promise<void> {
    for (;;) {
      const now = this.deps.clock.now();
      const lease = this.newLease(now);
      const orphans = await this.deps.store.claimOrphans(lease, now, CLAIM_BATCH, true);
      if (orphans.length === 0) return;
      this.deps.logger.warn({ count: orphans.length }, 'verifying orders left in flight by a previous run or by an instance whose lease ran out');
      for (const o of orphans) this.leases.set(o.id, lease.until);
      const byLink = new Map<string, SwitchOrder[]>();
      for (const o of orphans) byLink.set(o.link, [...(byLink.get(o.link) ?? []), o]);
      await Promise.all(
        [...byLink].map(async ([link, orders]) => {
          const queue = [...orders];
          const workers = Array.from({ length: Math.min(this.capacity(link), queue.length) }, async () => {
            for (let o = queue.shift(); o; o = queue.shift()) await this.verifyOrphan(o).catch((err: unknown) => this.deps.logger.error({ err, orderId: o.id }, 'verifying an interrupted attempt failed'));
          });
          await Promise.all(workers);
        }),
      );
      if (orphans.length < CLAIM_BATCH) return;
    }
  }

  private async verifyOrphan(order: SwitchOrder): Promise<void> {
    let target: Awaited<ReturnType<SwitchController['addressOf']>>;
    try {
      target = await this.addressOf(order);
    } catch (err) {
      this.leases.delete(order.id); // not verified here now: its lease runs out and it is taken over again
      throw err;
    }
    if (typeof target !== 'string' && !target.driver.isLinkUp(target.address.link)) {
      // The link is down (the broker is unreachable at start, say): a read now would fail and spend an attempt.
      // The order stays leased here (renewed) and is read once its link is back.
      const link = target.address.link;
      this.linkDrivers.set(link, target.driver);
      if (!this.unverified.has(order.id)) {
        this.deps.logger.warn({ meterId: order.meterId, orderId: order.id, attempt: order.attempts, link }, 'an order left in flight waits for its link to verify it by a read');
      }
      this.unverified.set(order.id, { order, link, driver: target.driver });
      return;
    }
    return this.onWire(order, () => this.verifyOrphanOnWire(order, target));
  }

  private async verifyOrphanOnWire(order: SwitchOrder, target: Awaited<ReturnType<SwitchController['addressOf']>>): Promise<void> {
    const log = this.deps.logger.child({ meterId: order.meterId, orderId: order.id, attempt: order.attempts });
    if (typeof target === 'string') {
      await this.finish(order, log, undefined, { command: 'not_sent', readBack: undefined }, undefined, undefined, target);
      return;
    }
    const read = await this.readBack(target.driver, target.address, order, 'verify');
    log.info({ read: read.outcome }, 'verified an interrupted attempt by a read');
    const refused = refusal(undefined, read);
    if (refused.credentialsRefused !== undefined) this.countRefusal(target, order.meterId, log, refused.credentialsRefused);
    await this.finish(order, log, target, { command: 'not_sent', ...readFacts(read), ...refused }, undefined, read, 'gateway restarted while this attempt was on the wire; verified by a read');
  }
}
