import type { Logger } from 'pino';
import { creditDecision, type PrepaymentConfig } from '../domain/prepayment/credit-control.js';
import { creditState, type CreditState } from '../domain/prepayment/credit-ledger.js';
import { costOfConsumption, type Tariff } from '../domain/prepayment/tariff.js';
import type { SwitchOrder } from '../domain/switch-order.js';
import type { GatewayStore, OrderRequest } from '../store/store.js';
import type { Clock } from './clock.js';

/**
 * Prepayment credit control (DOMAIN.md, prepayment): for meters in prepayment mode with an agreement on record,
 * the balance is folded from top-ups and consumption (register readings × tariff); after each change the credit
 * decision is asked until it has nothing more to do: low-credit warnings once per threshold and top-up, the
 * emergency-credit offer, a credit cut-off not before friendly hours end (and still through every safety rule),
 * or the reconnect after a top-up.
 */
export class CreditController {
  /** One evaluation at a time per meter: readings, top-ups and grants may arrive together. */
  private readonly chains = new Map<string, Promise<unknown>>();

  private serial<T>(meterId: string, work: () => Promise<T>): Promise<T> {
    const next = (this.chains.get(meterId) ?? Promise.resolve()).then(work, work);
    const settled = next.catch(() => undefined);
    this.chains.set(meterId, settled);
    void settled.then(() => {
      if (this.chains.get(meterId) === settled) this.chains.delete(meterId);
    });
    return next;
  }

  constructor(
    private readonly deps: {
      store: GatewayStore;
      clock: Clock;
      config: PrepaymentConfig & { tariff: Tariff };
      /** Admit orders as the gateway's credit control (same rules as any order). */
      submit: (requests: OrderRequest[]) => Promise<SwitchOrder[]>;
      logger: Logger;
    },
  ) {}

  private async isPrepayment(meterId: string): Promise<boolean> {
    const meter = await this.deps.store.getMeter(meterId);
    return !!meter && meter.flags.prepaymentMode && meter.flags.prepaymentAgreementRef !== null;
  }

  /**
   * A reading with the energy register: charge the energy since the last charged reading. `prepayment: false`
   * (the meter's facts as the reading's caller just read them) skips a meter that is not in prepayment mode
   * without reading its facts again.
   */
  onReading(meterId: string, reading: { at: number; energyWh: number; prepayment?: boolean }): Promise<void> {
    if (reading.prepayment === false) return Promise.resolve();
    return this.serial(meterId, () => this.chargeReading(meterId, reading));
  }

  private async chargeReading(meterId: string, reading: { at: number; energyWh: number }): Promise<void> {
    if (!(await this.isPrepayment(meterId))) return;
    const memory = await this.deps.store.creditControl(meterId);
    const last = memory.lastReading;
    if (last && reading.at > last.at) {
      const cost = costOfConsumption(last, reading, this.deps.config.tariff);
      if (cost.flag === null && cost.energyWh > 0) {
        await this.deps.store.appendCreditEvent(meterId, { type: 'consumption', costMicro: cost.costMicro, at: reading.at, fromWh: last.energyWh, toWh: reading.energyWh }, 'credit-control');
      } else if (cost.flag === 'cost_out_of_bounds') {
        this.deps.logger.warn({ meterId, fromWh: last.energyWh, toWh: reading.energyWh }, 'reading not charged: its cost is beyond any real reading (a register jump?); it is the new baseline');
      }
    }
    if (!last || reading.at > last.at) await this.deps.store.setCreditControl(meterId, { ...memory, lastReading: reading });
    await this.decide(meterId);
  }

  /**
   * A meter swap: the old register's final reading is charged, then the new register's first reading is the
   * baseline, so the difference between two registers is never charged as consumption.
   */
  onMeterSwap(meterId: string, swap: { at: number; oldFinalWh: number; newFirstWh: number }): Promise<void> {
    return this.serial(meterId, async () => {
      if (!(await this.isPrepayment(meterId))) return;
      await this.chargeReading(meterId, { at: swap.at, energyWh: swap.oldFinalWh });
      const memory = await this.deps.store.creditControl(meterId);
      // A reading later than the swap (the swap was recorded late) is already the baseline: it is kept.
      if (memory.lastReading && memory.lastReading.at > swap.at) return;
      await this.deps.store.setCreditControl(meterId, { ...memory, lastReading: { at: swap.at, energyWh: swap.newFirstWh } });
    });
  }

  /** The customer accepts emergency credit. */
  grantEmergencyCredit(meterId: string, actor: string): Promise<CreditState> {
    return this.serial(meterId, async () => {
      const now = this.deps.clock.now();
      const amount = this.deps.config.credit.emergencyCredit.amount;
      // None configured (0): there is nothing to grant, and the ledger takes no empty grant.
      if (amount > 0) await this.deps.store.appendCreditEvent(meterId, { type: 'emergency_credit_granted', amount, at: now }, actor);
      await this.decide(meterId);
      return this.state(meterId);
    });
  }

  async state(meterId: string): Promise<CreditState> {
    return creditState(await this.deps.store.creditEvents(meterId), this.deps.config.credit);
  }

  /** Ask the credit decision until it has nothing more to do (after a top-up, say). */
  evaluate(meterId: string): Promise<void> {
    return this.serial(meterId, () => this.decide(meterId));
  }

  private async decide(meterId: string): Promise<void> {
    if (!(await this.isPrepayment(meterId))) return;
    const { store, config, clock } = this.deps;
    const log = this.deps.logger.child({ meterId });
    for (let step = 0; step < 6; step++) {
      const now = clock.now();
      const events = await store.creditEvents(meterId);
      const state = creditState(events, config.credit);
      const previous = events.length > 1 ? creditState(events.slice(0, -1), config.credit) : null;
      let memory = await store.creditControl(meterId);
      const cycle = state.lastTopUp?.ref ?? null;
      if (memory.cycleRef !== cycle) memory = { ...memory, cycleRef: cycle, warningsSent: [], emergencyOffered: false };
      const open = await store.openOrdersForMeter(meterId);
      const cutOffPending = open.some((o) => o.action === 'disconnect' && o.reason === 'credit_exhausted');
      const lastOff = await store.lastCompletedOrder(meterId, 'disconnect');
      const lastOn = await store.lastCompletedOrder(meterId, 'reconnect');
      const meterOff = !!lastOff && lastOff.reason === 'credit_exhausted' && (!lastOn || (lastOn.completedAt ?? 0) < (lastOff.completedAt ?? 0)) && !open.some((o) => o.action === 'reconnect');
      const decision = creditDecision({ state, previous, meterOff, cutOffPending, warningsSent: memory.warningsSent, emergencyCreditOffered: memory.emergencyOffered }, now, config);
      if (decision.kind === 'none') {
        await store.setCreditControl(meterId, memory);
        return;
      }
      log.info({ decision: decision.kind, why: decision.why, balance: state.balance }, 'credit control');
      if (decision.kind === 'warn') {
        for (const t of decision.thresholds) await store.recordAlert('customer.low_credit', { meterId, thresholdPercent: t, balance: state.balance, lastTopUp: state.lastTopUp, at: new Date(now).toISOString() }, now);
        memory = { ...memory, warningsSent: [...memory.warningsSent, ...decision.thresholds] };
      } else if (decision.kind === 'offer_emergency_credit') {
        await store.recordAlert('customer.emergency_credit_offer', { meterId, amount: decision.amount, balance: state.balance, at: new Date(now).toISOString() }, now);
        memory = { ...memory, emergencyOffered: true };
      } else {
        const reconnect = decision.kind === 'reconnect';
        await this.deps.submit([
          {
            meterId,
            action: reconnect ? 'reconnect' : 'disconnect',
            reason: reconnect ? 'top_up' : 'credit_exhausted',
            note: decision.why,
            urgent: false,
            notBefore: reconnect ? null : decision.notBefore,
            paymentAt: reconnect ? (state.lastTopUp?.at ?? now) : null,
            requestedBy: 'credit-control',
            // The only path by which a credit cut-off is admitted (DOMAIN.md rule 8); the gate also checks the ledger again before every attempt.
            origin: 'credit_control',
            idempotencyKey: `credit:${meterId}:${cycle ?? 'none'}:${decision.kind}:${events.length}`,
            requestHash: `${decision.kind}:${events.length}`,
          },
        ]);
      }
      await store.setCreditControl(meterId, memory);
      if (decision.kind === 'cut_off' || decision.kind === 'reconnect') return;
    }
  }
}
