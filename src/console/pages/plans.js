import { api, session } from '../api.js';
import { stackedBar } from '../charts.js';
import { announce, badge, errorBox, field, fill, fmtTime, h, newIdempotencyKey, select, table, timesIn } from '../dom.js';
import { parseMeterList } from './orders.js';
import { planOutcome } from '../plan-outcome.js';

const STATES = ['not_created', 'accepted', 'held', 'queued', 'in_flight', 'escalated', 'done', 'armed', 'done_by_field', 'failed', 'cancelled', 'superseded', 'refused'];
/** The plan's outcome as a badge: the word is its orders' outcome, the colour follows it (never green for a refusal). */
const outcomeBadge = (p) => {
  const { word, kind } = planOutcome(p);
  return badge(word, kind);
};
const FINAL = new Set(['done', 'armed', 'done_by_field', 'failed', 'cancelled', 'superseded', 'refused']);

/** "2026-11-24T08:00" for a datetime-local input, in the browser's time zone. */
const localInput = (ms) => {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
};

export async function render(main, ctx) {
  if (ctx.params.planId) return renderPlan(main, ctx, ctx.params.planId);
  main.append(h('h1', {}, 'Disconnect plans'));
  if (session.can('plan:draft')) main.append(draftForm(ctx));
  const list = h('div');
  main.append(h('section.card', { 'aria-labelledby': 'h-plans' }, h('h2', { id: 'h-plans' }, 'Plans, newest first'), list));
  try {
    const { items } = await api('/v1/plans');
    fill(
      list,
      table(
        `${items.length} plan(s)`,
        [
          { label: 'Plan', cell: (p) => h('a', { href: `#/plans/${encodeURIComponent(p.id)}` }, p.id) },
          // The outcome, not only the decision: "approved · 1 of 1 refused" is never green.
          { label: 'Status', cell: (p) => outcomeBadge(p) },
          { label: 'Reason', cell: (p) => p.reason },
          { label: 'Meters', cell: (p) => String(p.items.length), class: 'num' },
          { label: 'Window', cell: (p) => `${fmtTime(p.windowFrom)} – ${fmtTime(p.windowTo)}` },
          { label: 'Author', cell: (p) => p.author },
          { label: 'Decided by', cell: (p) => p.decidedBy ?? '—' },
        ],
        items,
        { empty: 'No plans yet.', stack: true },
      ),
    );
  } catch (err) {
    fill(list, errorBox(err));
  }
}

function draftForm(ctx) {
  // Plans are for arrears; credit cut-offs come only from the gateway's credit control (DOMAIN.md rule 8).
  const reason = select('reason', ['arrears'], 'arrears');
  const from = h('input', { type: 'datetime-local', required: true, value: localInput(Date.now() + 3600_000) });
  const to = h('input', { type: 'datetime-local', required: true, value: localInput(Date.now() + 3 * 86400_000) });
  const meters = h('textarea', { rows: 3, required: true, placeholder: 'meter ids, separated by commas or lines' });
  const note = h('input', { maxlength: 500 });
  const status = h('div', { 'aria-live': 'polite' });
  return h(
    'section.card',
    { 'aria-labelledby': 'h-draft' },
    h('h2', { id: 'h-draft' }, 'Draft a plan'),
    h('p.muted', {}, 'A supervisor who is not the author approves it; the gateway then runs each disconnect inside the window and every rule.'),
    h(
      'form.inline-form',
      {
        onsubmit: async (e) => {
          e.preventDefault();
          fill(status);
          try {
            const body = { reason: reason.value, windowFrom: new Date(from.value).toISOString(), windowTo: new Date(to.value).toISOString(), meters: [...new Set(parseMeterList(meters.value))] };
            if (note.value.trim()) body.note = note.value.trim();
            const plan = await api('/v1/plans', { method: 'POST', idempotencyKey: newIdempotencyKey('plan'), body });
            announce(`plan ${plan.id} drafted`);
            ctx.navigate(`/plans/${encodeURIComponent(plan.id)}`);
          } catch (err) {
            fill(status, errorBox(err));
          }
        },
      },
      field('Reason', reason),
      field('Window from', from),
      field('Window to', to),
      field('Meters', meters),
      field('Note', note, 'optional, e.g. the billing run'),
      h('button.primary', { type: 'submit' }, 'Draft plan'),
    ),
    status,
  );
}

async function renderPlan(main, ctx, planId) {
  const box = h('div');
  const status = h('div', { 'aria-live': 'polite' });
  main.append(h('h1', {}, `Plan ${planId}`), status, box);
  const act = async (verb) => {
    fill(status);
    try {
      await api(`/v1/plans/${encodeURIComponent(planId)}/${verb}`, { method: 'POST', idempotencyKey: newIdempotencyKey(`plan-${verb}`) });
      announce(`plan ${verb} done`);
      await load();
      box.querySelector('h2')?.focus();
    } catch (err) {
      fill(status, errorBox(err));
    }
  };
  let shown = '';
  const load = async () => {
    let p;
    try {
      p = await api(`/v1/plans/${encodeURIComponent(planId)}`);
    } catch (err) {
      fill(box, errorBox(err));
      return null;
    }
    // Redraw only on change, so a periodic refresh does not take the keyboard focus away from a button.
    const json = JSON.stringify(p);
    if (json === shown) return p;
    shown = json;
    const total = p.items.length;
    const finished = p.items.filter((i) => i.state && FINAL.has(i.state)).length;
    const buttons = [];
    // Maker–checker: never offered to the plan's author (the same client, whichever of its keys); the gateway refuses it anyway.
    if (p.status === 'draft' && session.can('plan:approve') && p.author !== session.who.clientId) {
      buttons.push(h('button.primary', { type: 'button', onclick: () => void act('approve') }, 'Approve'));
      buttons.push(h('button', { type: 'button', onclick: () => void act('reject') }, 'Reject'));
    }
    if ((p.status === 'draft' || p.status === 'approved') && session.can('plan:cancel')) {
      buttons.push(h('button.danger', { type: 'button', onclick: () => { if (confirm('Cancel this plan? Its orders not yet on the wire are cancelled.')) void act('cancel'); } }, 'Cancel plan'));
    }
    fill(
      box,
      h(
        'section.card',
        { 'aria-labelledby': 'h-plan' },
        h('h2', { id: 'h-plan' }, 'Plan'),
        h(
          'dl.facts',
          {},
          h('dt', {}, 'Status'),
          h('dd', { id: 'plan-status' }, badge(p.status)),
          h('dt', {}, 'Outcome'),
          h('dd', { id: 'plan-outcome' }, outcomeBadge(p)),
          h('dt', {}, 'Reason'),
          h('dd', {}, p.reason + (p.note ? ` — ${p.note}` : '')),
          h('dt', {}, 'Window'),
          h('dd', {}, `${fmtTime(p.windowFrom)} – ${fmtTime(p.windowTo)}`),
          h('dt', {}, 'Author'),
          h('dd', {}, `${p.author}, ${fmtTime(p.createdAt)}`),
          h('dt', {}, 'Decided'),
          h('dd', {}, p.decidedBy ? `${p.decidedBy}, ${fmtTime(p.decidedAt)}` : '—'),
        ),
        buttons.length ? h('div.actions', {}, buttons) : null,
      ),
      h(
        'section.card',
        { 'aria-labelledby': 'h-exec' },
        h('h2', { id: 'h-exec' }, 'Execution'),
        h('p', {}, `${finished} of ${total} meters finished.`),
        h('progress', { max: total, value: finished, 'aria-label': 'plan progress' }),
        stackedBar('Plan meters by order state', STATES.map((s) => ({ label: s, value: p.summary[s] ?? 0, kind: s }))),
        h('ul.legend', {}, Object.entries(p.summary).map(([s, n]) => h('li', {}, badge(s.replaceAll('_', ' '), s), ` ${n}`))),
        table(
          'Per meter',
          [
            { label: 'Meter', cell: (i) => h('a', { href: `#/meters/${encodeURIComponent(i.meterId)}` }, i.meterId) },
            { label: 'State', cell: (i) => (i.state ? badge(i.state) : badge('not created', 'unknown')) },
            { label: 'Why', cell: (i) => timesIn(i.why ?? '') },
            { label: 'Order', cell: (i) => (i.orderId ? h('code', {}, i.orderId) : '—') },
          ],
          p.items,
          { class: 'compact', stack: true },
        ),
      ),
    );
    return p;
  };
  await load();
  const timer = setInterval(load, 2000);
  return () => clearInterval(timer);
}
