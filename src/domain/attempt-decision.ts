import { judgeAttempt, type AttemptFacts } from './attempt-verdict.js';
import { escalateVerdict, type EscalatedVerdict, type EscalationPolicy } from './escalation.js';
import type { FirmwareProfile } from './firmware-profile.js';
import { DEFAULT_FLAGS, type MeterFlags } from './policy/meter-facts.js';
import type { SwitchOrder } from './switch-order.js';

/**
 * What an attempt's result is judged by, as plain data (it crosses to the store's worker thread, where a function
 * cannot go): the profile's retry and relay rules, what the attempt proved, when, the random draw for the retry's
 * jitter, and, for field escalation (DOMAIN.md rule 11), the meter's flags and the region's escalation policy. The
 * store applies it to the order as it is in the store at that moment (a later order may have superseded it).
 */
export interface AttemptJudgement {
  rules: Pick<FirmwareProfile, 'relay' | 'retry'>;
  facts: AttemptFacts;
  now: number;
  /** In [0, 1): the retry delay's jitter (retryDelay). */
  random: number;
  /** With `escalation`: the verdict is escalated to the field where rule 11 says so; absent: the plain verdict. */
  flags?: Pick<MeterFlags, 'medicalEquipment' | 'vulnerable' | 'priorityRegister'>;
  escalation?: EscalationPolicy;
}

/** The order's next state from the order as it is now and the attempt's judgement. Pure. */
export function decideAttempt(current: SwitchOrder, j: AttemptJudgement): EscalatedVerdict {
  const verdict = judgeAttempt(current, j.rules, j.facts, j.now, j.random);
  if (!j.escalation) return verdict;
  return escalateVerdict(current, verdict, j.flags ?? DEFAULT_FLAGS, j.now, j.escalation);
}
