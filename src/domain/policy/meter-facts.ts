/** What the gateway knows about a customer and meter that the disconnect rules depend on (DOMAIN.md 1, 6, 8, 9, 10). */

export interface MeterFlags {
  /** Rule 6: never disconnected for non-payment by the gateway. */
  vulnerable: boolean;
  medicalEquipment: boolean;
  priorityRegister: boolean;
  /** Rule 9: the meter refuses every trip until released (保电, Q/GDW 1354). */
  protectedMode: boolean;
  /** Rule 8: credit-controlled; only with an agreement on record. */
  prepaymentMode: boolean;
  prepaymentAgreementRef: string | null;
  /** Rule 10: the meter can limit the load instead of cutting it. */
  hasLoadLimiter: boolean;
  loadLimitedSince: number | null;
}

export const DEFAULT_FLAGS: MeterFlags = {
  vulnerable: false,
  medicalEquipment: false,
  priorityRegister: false,
  protectedMode: false,
  prepaymentMode: false,
  prepaymentAgreementRef: null,
  hasLoadLimiter: false,
  loadLimitedSince: null,
};

export const NOTICE_CHANNELS = ['sms', 'email', 'letter', 'phone_call', 'hand_delivered'] as const;
export type NoticeChannel = (typeof NOTICE_CHANNELS)[number];
export const NOTICE_DELIVERY = ['delivered', 'failed', 'unknown'] as const;
export type NoticeDelivery = (typeof NOTICE_DELIVERY)[number];

export interface NoticeRecord {
  id: string;
  meterId: string;
  channel: NoticeChannel;
  servedAt: number;
  /** Only `delivered` is evidence: an SMS with a missing or failed receipt is not (DOMAIN.md rule 1, seed 004 §2.1). */
  delivery: NoticeDelivery;
  receiptRef: string | null;
  recordedBy: string;
  recordedAt: number;
}

export interface PlanFacts {
  id: string;
  status: 'draft' | 'approved' | 'rejected' | 'cancelled';
  windowFrom: number;
  windowTo: number;
}
