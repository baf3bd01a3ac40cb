import { dimensionOf } from '../domain/admission.js';
import type { SwitchOrder } from '../domain/switch-order.js';
import type { DueOrder, SubmitOutcome } from '../store/store.js';

/** The orders an admission created (not its replays), in its order: what it hands the control loop's wake. */
export function createdOrders(outcomes: readonly SubmitOutcome[]): SwitchOrder[] {
  const created: SwitchOrder[] = [];
  for (const o of outcomes) if (o.kind === 'created') created.push(o.order);
  return created;
}

/**
 * The due orders the control loop has fetched and not started yet, in the order the stores' due query returns them
 * (`ORDER BY priority DESC, deadline ASC NULLS LAST, seq`), and what the buffer knows it lacks: the links a fetch left
 * out (full or down then) and, when a fetch was cut at its limit, the last order it returned (orders ranking after it
 * may be missing).
 *
 * Admissions hand it the orders they created (issue 19: re-fetching the whole batch on every admission cost the loop
 * a due query per bulk request). An admitted order goes into the buffer only where the due query would have put it
 * among what the buffer holds: queued, due now, nothing on the wire for its meter when admitted, on a link the
 * buffer covers, and ranking before any cut. Anything else is left to the next fetch, exactly as before. What an
 * admission supersedes (the same meter's older order of the same dimension) leaves the buffer at once; a superseded
 * order that stays anywhere still fails to lease (beginAttempts, leaseDisconnect: only queued, held or escalated
 * orders are leased), so it is never sent.
 */
export class DueBuffer {
  /** Most urgent first; per link exactly the due query's order (ties of priority and deadline: older first). */
  orders: DueOrder[] = [];
  fetchedAt = 0;
  /**
   * Whether the buffer holds what the last fetch afresh found, kept up to date since (false: cleared, or never
   * fetched). A valid empty buffer is an answer too: nothing was due on the links it covers.
   */
  valid = false;
  /** When the last fetch (afresh or added) was asked for. */
  lastFetchAt = 0;
  /** Links whose due orders the buffer may lack (left out of the fetches since the last full one). */
  private missingLinks = new Set<string>();
  /** The last order of a fetch cut at its limit (the highest-ranked such order): orders ranking after it may be missing. */
  private cut: DueOrder | null = null;
  /** Set while a fetch is on its way: what is admitted meanwhile is applied again to its result, which may lack it. */
  private admittedDuringFetch: SwitchOrder[] | null = null;
  /** Cleared while a fetch was on its way: its result may predate what cleared the buffer, and is not used. */
  private fetchVoided = false;

  /** A fetch is about to be asked for (replace or add follows with its rows). */
  fetching(): void {
    this.admittedDuringFetch = [];
    this.fetchVoided = false;
  }

  /** A fetch afresh: `excluded` are the links it left out; `limit` the most it could return. */
  replace(rows: DueOrder[], now: number, excluded: readonly string[], limit: number): void {
    if (this.voided()) return;
    this.orders = rows;
    this.valid = true;
    this.fetchedAt = now;
    this.lastFetchAt = now;
    this.missingLinks = new Set(excluded);
    this.cut = rows.length >= limit ? rows[rows.length - 1]! : null;
    this.admitLate(now);
  }

  /**
   * A fetch of the links the buffer had nothing for (`excluded`: the links it left out, the buffered ones among
   * them). Links still left out that the buffer does not hold stay missing; the rest are now covered.
   */
  add(rows: DueOrder[], now: number, excluded: readonly string[], limit: number): void {
    if (this.voided()) return;
    this.lastFetchAt = now;
    const stillOut = new Set(excluded);
    for (const link of this.missingLinks) if (!stillOut.has(link)) this.missingLinks.delete(link);
    if (rows.length >= limit) {
      const last = rows[rows.length - 1]!;
      if (this.cut === null || rank(last, this.cut) < 0) this.cut = last;
    }
    this.orders = mergeByRank(this.orders, rows);
    this.admitLate(now);
  }

  private voided(): boolean {
    if (!this.fetchVoided) return false;
    this.fetchVoided = false;
    this.clear();
    return true;
  }

  private admitLate(now: number): void {
    const late = this.admittedDuringFetch;
    this.admittedDuringFetch = null;
    if (late && late.length > 0) this.admit(late, now);
  }

  /** An order of `link` left the buffer unstarted (its meter was busy): the link's due orders are no longer all here. */
  missing(link: string): void {
    this.missingLinks.add(link);
  }

  /** Whether a fetch may find due orders the buffer lacks: of a link with room (mayLackOtherLinks), or `everyMs` since the last fetch (retries and ends of holds come due by the clock). */
  mayLack(saturated: readonly string[], now: number, everyMs: number): boolean {
    return this.mayLackOtherLinks(saturated) || now - this.lastFetchAt >= everyMs;
  }

  /**
   * Whether links the buffer holds nothing for may have due orders it lacks: links left out of its fetches (or that
   * dropped orders) that have room now, or a fetch cut at its limit. Otherwise a fetch of the other links would find
   * only what became due since (retries, ends of holds), which the caller fetches at its own pace.
   */
  mayLackOtherLinks(saturated: readonly string[]): boolean {
    if (this.cut !== null) return true;
    if (this.missingLinks.size === 0) return false;
    const without = new Set(saturated);
    for (const o of this.orders) without.add(o.link);
    for (const link of this.missingLinks) if (!without.has(link)) return true;
    return false;
  }

  /** Forget everything: the next pick fetches afresh. */
  clear(): void {
    this.orders = [];
    this.valid = false;
    this.missingLinks.clear();
    this.cut = null;
    if (this.admittedDuringFetch !== null) this.fetchVoided = true;
    this.admittedDuringFetch = null;
  }

  /**
   * Orders an admission created (in the order it created them). Each removes the buffered orders it supersedes,
   * then goes in at its place if the buffer can hold it exactly (see the class comment).
   */
  admit(created: readonly SwitchOrder[], now: number): void {
    this.admittedDuringFetch?.push(...created);
    if (!this.valid) return; // the next pick fetches afresh, the admitted orders with the rest
    // A meter keeps one order per dimension: keyed by the pair, so a 10,000-order bulk admission is one pass, not a scan
    // of the buffer and of the admissions before it for each order. A later order replaces an earlier one of the same
    // pair (and, not fitting, removes it), as it supersedes it in the store.
    const superseded = new Set<string>();
    const incoming = new Map<string, DueOrder>();
    for (const order of created) {
      if (order.state === 'refused') continue; // a refused order supersedes nothing
      const key = supersedeKey(order);
      superseded.add(key);
      incoming.delete(key);
      if (this.fits(order, now)) incoming.set(key, dueOrderOf(order));
    }
    if (superseded.size > 0 && this.orders.some((o) => superseded.has(supersedeKey(o)))) this.orders = this.orders.filter((o) => !superseded.has(supersedeKey(o)));
    if (incoming.size > 0) this.orders = mergeByRank(this.orders, [...incoming.values()].sort(rank));
  }

  private fits(order: SwitchOrder, now: number): boolean {
    // queued with no reason: not held, not waiting for an attempt on the wire ("waiting for … to leave the wire").
    if (order.state !== 'queued' || order.stateReason !== null || order.supersededBy !== null) return false;
    if (order.notBefore > now || order.nextAttemptAt > now) return false;
    if (this.missingLinks.has(order.link)) return false;
    // Newer than every fetched order: on a tie of priority and deadline it ranks after the cut, so it must rank before it.
    return this.cut === null || rank(order, this.cut) < 0;
  }
}

/** The due query's order without its last key (seq): negative when `a` goes first. */
export function rank(a: Pick<DueOrder, 'priority' | 'deadline'>, b: Pick<DueOrder, 'priority' | 'deadline'>): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.deadline === b.deadline) return 0;
  if (a.deadline === null) return 1;
  if (b.deadline === null) return -1;
  return a.deadline - b.deadline;
}

/** Both lists in rank order, merged; on a tie `first`'s order goes first (it is the older). */
function mergeByRank(first: DueOrder[], then: DueOrder[]): DueOrder[] {
  if (then.length === 0) return first;
  const out: DueOrder[] = [];
  let i = 0;
  let j = 0;
  while (i < first.length && j < then.length) out.push(rank(then[j]!, first[i]!) < 0 ? then[j++]! : first[i++]!);
  while (i < first.length) out.push(first[i++]!);
  while (j < then.length) out.push(then[j++]!);
  return out;
}

/** What one order supersedes in another: the same meter, the same dimension (supply, or limit). */
function supersedeKey(o: Pick<DueOrder, 'meterId' | 'action'>): string {
  return `${dimensionOf(o.action)}\u0000${o.meterId}`;
}

function dueOrderOf(o: SwitchOrder): DueOrder {
  return { id: o.id, meterId: o.meterId, link: o.link, action: o.action, reason: o.reason, state: o.state, priority: o.priority, deadline: o.deadline };
}
