import { api, qs, session } from '../api.js';
import { announce, badge, errorBox, field, fill, fmtMinutes, fmtTime, h, newIdempotencyKey, select, table, timesIn } from '../dom.js';
import { onOrders } from '../live.js';

const STATUSES = ['open', 'assigned', 'done', 'cancelled'];
/** What the crew found, as POST /v1/work-orders/:id/complete names it, in the crew's words. */
const OUTCOMES = [
  ['reconnected', 'reconnected: relay closed on site'],
  ['disconnected', 'disconnected: relay opened on site'],
  ['no_access', 'could not access the meter'],
  ['customer_refused', 'customer refused access'],
  ['meter_faulty', 'meter faulty'],
];
/** Most urgent first: the urgency word, then the time left. */
const URGENCY_RANK = { overdue: 0, critical: 1, urgent: 2, normal: 3, closed: 4 };

/** Urgency from the time left to the customer deadline: shown as a word, a colour only adds to it. */
export function urgency(w) {
  if (w.status === 'done' || w.status === 'cancelled') return 'closed';
  // A live load side (rule 14) is a danger to people now, whatever the customer's deadline.
  if (w.kind === 'load_side_voltage') return 'critical';
  if (w.timeLeftMinutes === null) return w.kind === 'inspection' && w.priority === 1 ? 'urgent' : 'normal';
  if (w.timeLeftMinutes < 0) return 'overdue';
  if (w.timeLeftMinutes < 120) return 'critical';
  if (w.timeLeftMinutes < 480) return 'urgent';
  return 'normal';
}

/** What the crew is asked to do, in words: a credentials work order is about the keys, a load-side one about safety, as well as the switch. */
export function actionWords(w) {
  if (w.kind === 'inspection') return 'inspect (relay audit)';
  if (w.kind === 'credentials') return `${w.action}: meter refuses the gateway's keys`;
  if (w.kind === 'load_side_voltage') return `${w.action}: refused, voltage on the load side (make safe first)`;
  return w.action;
}

/** Minutes to sort by: to the customer deadline, or, for an inspection (no deadline), to its due time. */
const minutesLeft = (w) => w.timeLeftMinutes ?? (Date.parse(w.dueAt) - Date.now()) / 60_000;

/** The list's order: by urgency word (a live load side first among equals in time), then time left, priority, due time. */
export const mostUrgentFirst = (a, b) => URGENCY_RANK[urgency(a)] - URGENCY_RANK[urgency(b)] || minutesLeft(a) - minutesLeft(b) || a.priority - b.priority || Date.parse(a.dueAt) - Date.parse(b.dueAt);

export async function render(main, ctx) {
  // By default the work still to do: open and assigned (a crew's own work orders stay in its list once assigned).
  const status = ctx.query.get('status') ?? 'todo';
  const region = ctx.query.get('region') ?? '';
  const statusSelect = select('status', [['todo', 'open or assigned'], ['', 'any status'], ...STATUSES.map((s) => [s, s])], status);
  const regionInput = h('input', { name: 'region', value: region, placeholder: 'e.g. north' });
  const list = h('div');
  const result = h('div', { id: 'wo-result', 'aria-live': 'polite' });
  main.append(
    h('h1', {}, 'Work orders'),
    h(
      'section.card',
      { 'aria-labelledby': 'h-wo' },
      h('h2', { id: 'h-wo' }, 'Field work orders by time left'),
      h(
        'form.inline-form',
        { onsubmit: (e) => { e.preventDefault(); ctx.navigate(`/work-orders${qs({ status: statusSelect.value || 'any', region: regionInput.value.trim() })}`); } },
        field('Status', statusSelect),
        field('Region', regionInput),
        h('button', { type: 'submit' }, 'Apply'),
      ),
      h('p.muted', {}, 'Raised when a remote action failed or cannot finish before its deadline (due before the customer deadline), or when a meter refuses the gateway’s keys (check the key file or renew the keys), or by the relay audit when a relay is open with no order or closed while it should be open (an inspection). Most urgent first.'),
      result,
      list,
    ),
  );
  const canUpdate = session.can('workorder:update');
  const me = session.who?.clientId;
  // ---- assign and complete (POST /v1/work-orders/:id/assign and /complete) ----
  const write = async (w, what, body, words) => {
    fill(result, h('p.muted', {}, `Sending: ${words}…`));
    try {
      const res = await api(`/v1/work-orders/${encodeURIComponent(w.id)}/${what}`, { method: 'POST', idempotencyKey: newIdempotencyKey(`wo-${what}`), body });
      const done = what === 'complete' ? res.workOrder : res;
      const order = what === 'complete' ? res.order : null;
      fill(
        result,
        h(
          'p.wo-result',
          { role: 'status' },
          `Work order for meter ${done.meterId}: `,
          badge(done.status),
          done.assignedTo ? ` (${done.assignedTo})` : '',
          done.outcome ? ` — ${OUTCOMES.find(([v]) => v === done.outcome)?.[1] ?? done.outcome}` : '',
          order ? [`; order `, h('code', {}, order.id), ' ', badge(order.state)] : '',
        ),
      );
      announce(`work order for meter ${done.meterId} ${done.status}`);
    } catch (err) {
      // The form stays open as it was, so the crew can send it again (e.g. E_ORDER_ON_WIRE: in a few seconds).
      fill(result, errorBox(err));
      announce(`refused: ${err.code}`);
      return;
    }
    await load(true);
  };
  const actions = (w) => {
    if (!canUpdate || w.status === 'done' || w.status === 'cancelled') return '';
    const assignee = h('input', { name: 'assignee', required: true, maxlength: 100, autocomplete: 'off', placeholder: 'e.g. crew-east-2' });
    const outcome = select('outcome', OUTCOMES, w.action === 'disconnect' ? 'disconnected' : 'reconnected');
    const note = h('textarea', { name: 'note', rows: 2, maxlength: 1000 });
    return h(
      'div.wo-actions',
      {},
      me && w.assignedTo !== me
        ? h('button', { type: 'button', 'aria-label': `Assign the work order for meter ${w.meterId} to me`, onclick: () => write(w, 'assign', { assignee: me }, `assign to ${me}`) }, 'Assign to me')
        : null,
      h(
        'details',
        {},
        h('summary', {}, 'Assign…'),
        h('form.small-form', { 'aria-label': `Assign the work order for meter ${w.meterId}`, onsubmit: (e) => { e.preventDefault(); void write(w, 'assign', { assignee: assignee.value.trim() }, `assign to ${assignee.value.trim()}`); } }, field('Assign to', assignee, 'a crew or a key’s client id'), h('button', { type: 'submit' }, 'Assign')),
      ),
      h(
        'details',
        {},
        h('summary', {}, 'Complete'),
        h(
          'form.small-form',
          {
            'aria-label': `Complete the work order for meter ${w.meterId}`,
            onsubmit: (e) => {
              e.preventDefault();
              const body = { outcome: outcome.value };
              if (note.value.trim()) body.note = note.value.trim();
              void write(w, 'complete', body, `complete (${outcome.value.replaceAll('_', ' ')})`);
            },
          },
          field('What was found', outcome),
          field('Note', note, 'optional: what the crew did or saw'),
          h('button.primary', { type: 'submit' }, 'Complete work order'),
        ),
      ),
    );
  };
  /** A refresh would close a form being filled in: it waits while one is open or has the focus. */
  const busy = () => Boolean(list.querySelector('details[open]') || list.contains(document.activeElement));
  const load = async (force = false) => {
    if (!force && busy()) return;
    try {
      const asked = status === 'todo' ? ['open', 'assigned'] : [status === 'any' ? '' : status];
      const pages = await Promise.all(asked.map((s) => api(`/v1/work-orders${qs({ status: s, region, limit: 1000 })}`)));
      const items = pages.flatMap((p) => p.items).sort(mostUrgentFirst);
      fill(
        list,
        table(
          `${items.length} work order(s)`,
          [
            { label: 'Urgency', cell: (w) => badge(urgency(w)) },
            { label: 'Time left', cell: (w) => fmtMinutes(w.timeLeftMinutes), class: 'num' },
            { label: 'Deadline', cell: (w) => fmtTime(w.deadline) },
            { label: 'Due', cell: (w) => fmtTime(w.dueAt) },
            { label: 'Meter', cell: (w) => h('a', { href: `#/meters/${encodeURIComponent(w.meterId)}` }, w.meterId) },
            { label: 'Region', cell: (w) => w.region },
            { label: 'Action', cell: (w) => actionWords(w) },
            { label: 'Priority', cell: (w) => String(w.priority), class: 'num' },
            { label: 'Status', cell: (w) => `${w.status}${w.assignedTo ? ` (${w.assignedTo})` : ''}` },
            { label: 'Why', cell: (w) => timesIn(w.reason) },
            ...(canUpdate ? [{ label: 'Do', cell: actions }] : []),
          ],
          items,
          { empty: 'No work orders. Nothing is waiting for a crew.', stack: true, rowClass: (w) => `u-${urgency(w)}`, rowData: (w) => ({ workOrder: w.id, meter: w.meterId }) },
        ),
        h('p.muted', {}, `Updated ${fmtTime(new Date().toISOString())}.`),
      );
    } catch (err) {
      fill(list, errorBox(err));
    }
  };
  await load();
  // Escalations and field completions show up as order changes; time left also moves on its own.
  let soon = null;
  const off = onOrders((orders) => {
    if (soon || !orders.some((o) => ['escalated', 'done', 'done_by_field', 'failed'].includes(o.state))) return;
    soon = setTimeout(() => {
      soon = null;
      void load();
    }, 500);
  });
  const timer = setInterval(() => void load(), 5000);
  return () => {
    off();
    clearInterval(timer);
    if (soon) clearTimeout(soon);
  };
}
