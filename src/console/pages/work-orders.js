import { api, qs } from '../api.js';
import { badge, errorBox, field, fill, fmtMinutes, fmtTime, h, select, table } from '../dom.js';
import { onOrders } from '../live.js';

const STATUSES = ['open', 'assigned', 'done', 'cancelled'];

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

export async function render(main, ctx) {
  const status = ctx.query.get('status') ?? 'open';
  const region = ctx.query.get('region') ?? '';
  const statusSelect = select('status', [['', 'any status'], ...STATUSES.map((s) => [s, s])], status);
  const regionInput = h('input', { name: 'region', value: region, placeholder: 'e.g. north' });
  const list = h('div');
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
      h('p.muted', {}, 'Raised when a remote action failed or cannot finish before its deadline (due before the customer deadline), or when a meter refuses the gateway’s keys (check the key file or renew the keys), or by the relay audit when a relay is open with no order or closed while it should be open (an inspection). Sorted by time left.'),
      list,
    ),
  );
  const load = async () => {
    try {
      const res = await api(`/v1/work-orders${qs({ status: status === 'any' ? '' : status, region, limit: 1000 })}`);
      const items = res.items.slice().sort((a, b) => minutesLeft(a) - minutesLeft(b) || a.priority - b.priority || Date.parse(a.dueAt) - Date.parse(b.dueAt));
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
            { label: 'Why', cell: (w) => w.reason },
          ],
          items,
          { empty: 'No work orders. Nothing is waiting for a crew.', rowClass: (w) => `u-${urgency(w)}`, rowData: (w) => ({ workOrder: w.id, meter: w.meterId }) },
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
  const timer = setInterval(load, 5000);
  return () => {
    off();
    clearInterval(timer);
    if (soon) clearTimeout(soon);
  };
}
