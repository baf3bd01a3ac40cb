/**
 * What a plan came to, as a word and a badge kind. A plan's status says only what the supervisor decided; once it is
 * approved, the outcome is its orders': green only when every meter's order is done, red when any was refused or
 * failed (or could not be created), amber while one waits for the field, grey when a payment ended one (cancelled
 * after the re-check, superseded by a reconnect), blue while orders are still running.
 */
const DONE = ['done', 'armed', 'done_by_field'];
const SHOWN = ['refused', 'failed', 'not_created', 'escalated', 'cancelled', 'superseded'];

export function planOutcome(plan) {
  if (plan.status !== 'approved') return { word: plan.status, kind: plan.status };
  const total = plan.items.length;
  const count = (s) => plan.summary[s] ?? 0;
  const done = DONE.reduce((sum, s) => sum + count(s), 0);
  const parts = SHOWN.filter((s) => count(s) > 0).map((s) => `${count(s)} of ${total} ${s.replaceAll('_', ' ')}`);
  if (done === total) return { word: `approved · ${total} of ${total} done`, kind: 'done' };
  if (count('refused') + count('failed') + count('not_created') > 0) return { word: `approved · ${parts.join(', ')}`, kind: 'refused' };
  if (count('escalated') > 0) return { word: `approved · ${parts.join(', ')}`, kind: 'escalated' };
  const running = total - done - SHOWN.reduce((sum, s) => sum + count(s), 0);
  if (running > 0) return { word: `approved · ${done} of ${total} done${parts.length ? `, ${parts.join(', ')}` : ''}`, kind: 'in_flight' };
  return { word: `approved · ${[`${done} of ${total} done`, ...parts].join(', ')}`, kind: 'cancelled' };
}
