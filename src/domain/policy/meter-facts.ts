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

/** What each channel's reference is, in the words a person recording a notice understands. */
export const NOTICE_REFERENCE: Readonly<Record<NoticeChannel, string>> = {
  sms: "the SMS gateway's delivery receipt",
  email: "the mail server's delivery receipt",
  letter: 'the tracking or proof-of-posting number',
  hand_delivered: 'the signed delivery slip',
  phone_call: 'the call record',
};

/**
 * Rule 1: a notice is evidence only when it is `delivered` AND carries its reference (an SMS or e-mail with no
 * receipt reference, a letter or hand delivery with no record of it, is a claim, not evidence). Returns why a
 * notice recorded as delivered is not evidence, or null when it is (or when it does not claim delivery).
 */
export function deliveredNoticeProblem(n: Pick<NoticeRecord, 'channel' | 'delivery' | 'receiptRef'>): string | null {
  if (n.delivery !== 'delivered') return null;
  if (n.receiptRef !== null && n.receiptRef.trim().length > 0) return null;
  return `a notice by ${n.channel.replace('_', ' ')} recorded as delivered needs its reference (${NOTICE_REFERENCE[n.channel]}); without it the delivery is not evidence`;
}

/** Rule 1: the notices the gate may count. */
export const isNoticeEvidence = (n: Pick<NoticeRecord, 'channel' | 'delivery' | 'receiptRef'>): boolean => n.delivery === 'delivered' && deliveredNoticeProblem(n) === null;

export interface PlanFacts {
  id: string;
  status: 'draft' | 'approved' | 'rejected' | 'cancelled';
  windowFrom: number;
  windowTo: number;
}
