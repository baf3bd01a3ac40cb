// #/orders/<orderId>: one order, everything the head-end operator or the call centre needs about it: its facts, the
// rules it passed or was stopped by, every attempt with its evidence, every state change, what went out about it
// (callbacks, notifications) and the work order raised for it.
import { api, qs, session } from '../api.js';
import { badge, errorBox, fill, fmtMinutes, fmtTime, h, orderWhat, table } from '../dom.js';
import { onOrders } from '../live.js';

/** The order's outcome colours: a rule's outcome and an attempt's outcome as badge kinds. */
const RULE_KIND = { passed: 'done', held: 'held', stopped: 'refused', not_checked: 'unknown', not_applicable: 'unknown' };
const ATTEMPT_KIND = (outcome) => (outcome === null ? 'in_flight' : outcome === 'ok' ? 'done' : outcome === 'interrupted' ? 'unknown' : 'failed');
const FINAL = new Set(['done', 'armed', 'done_by_field', 'failed', 'cancelled', 'superseded', 'refused']);

const link = (href, text) => h('a', { href }, text);
const idLink = (path, id) => link(`#/${path}/${encodeURIComponent(id)}`, h('code', {}, id));

/** Who made a state change, when the stored reason names them ("requested by X", "approved by X", "cancelled by X", "done on site by X"). */
export function actorOf(reason) {
  const m = /^(?:requested|approved|cancelled|done on site) by ([^\s:(]+)/.exec(reason ?? '');
  return m ? m[1] : 'gateway';
}

/** Evidence as the meter or driver gave it: a JSON object becomes "key: value" lines (nested ones indented), anything else wrapped text. */
function evidenceBlock(label, text) {
  if (text === null || text === undefined || text === '') return h('div.evidence', {}, h('h4', {}, label), h('p.muted', {}, 'none recorded'));
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const body = parsed !== null && typeof parsed === 'object' ? valueList(parsed) : h('pre.wrap', {}, text);
  return h('div.evidence', {}, h('h4', {}, label), body);
}

function valueList(obj) {
  return h(
    'dl.facts.evidence-values',
    {},
    Object.entries(obj).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v !== null && typeof v === 'object' ? valueList(v) : v === null ? '—' : evidenceValue(k, v))]),
  );
}

/** A meter's `ts` (milliseconds since 1970, the MQTT contract) is shown as a time, with the raw value beside it. */
function evidenceValue(key, v) {
  if (key === 'ts' && typeof v === 'number' && v > 1e12) return `${fmtTime(new Date(v).toISOString())} (${v})`;
  return String(v);
}

function factsSection(o, workOrders) {
  const now = Date.now();
  const left = o.deadline && !FINAL.has(o.state) ? (Date.parse(o.deadline) - now) / 60000 : null;
  const facts = [
    ['Order', h('code', { id: 'order-id' }, o.id)],
    ['Meter', idLink('meters', o.meterId)],
    ['What', orderWhat(o)],
    // A refusal's reason has its own line below, with its code.
    ['State', h('span', { id: 'order-state' }, badge(o.state), o.stateReason && o.state !== 'refused' ? h('span.state-reason', {}, ` ${o.stateReason}`) : null)],
    ['Reason', o.reason.replaceAll('_', ' ')],
    ['Requested by', h('code', {}, o.requestedBy)],
    ['Came in by', o.origin.replaceAll('_', ' ')],
    ['Note', o.note ?? '—'],
    ['Reference', o.reference ?? '—'],
    ['Created', fmtTime(o.createdAt)],
    ['Updated', fmtTime(o.updatedAt)],
    ['Finished', o.completedAt ? fmtTime(o.completedAt) : FINAL.has(o.state) ? fmtTime(o.updatedAt) : 'not yet'],
    ['Deadline', o.deadline ? `${fmtTime(o.deadline)}${left !== null ? ` (${left < 0 ? fmtMinutes(left) : `${fmtMinutes(left)} left`})` : ''}` : 'none'],
    ['Urgent', o.urgent ? badge('urgent (medical)', 'urgent') : 'no'],
    ['Payment received', o.paymentReceivedAt ? fmtTime(o.paymentReceivedAt) : null],
    ['Plan', o.planId ? idLink('plans', o.planId) : 'none'],
    ['Approval', o.approvedBy ? `approved by ${o.approvedBy} at ${fmtTime(o.approvedAt)}` : null],
    ['Attempts used', String(o.attemptsUsed)],
    ['Next attempt', o.nextAttemptAt ? fmtTime(o.nextAttemptAt) : null],
    ['Superseded by', o.supersededBy ? link(`#/orders/${encodeURIComponent(o.supersededBy)}`, h('code', {}, o.supersededBy)) : null],
    ['Result', o.result.relay ? `${o.result.relay}${o.result.verified ? ' (verified by read-back)' : ' (not verified)'}` : '—'],
  ];
  if (o.state === 'refused') {
    // The stored reason starts with the rule's code: "E_PLAN_REQUIRED: disconnect for non-payment refused: …".
    const m = /^(E_[A-Z_]+): ([\s\S]*)$/.exec(o.stateReason ?? '');
    facts.push(['Refused', h('span', { id: 'order-refusal' }, h('strong', {}, m ? m[1] : 'refused'), ': ', m ? m[2] : (o.stateReason ?? ''))]);
  }
  if (workOrders) {
    facts.push([
      'Work order',
      workOrders.length === 0 ? 'none' : workOrders.map((w, i) => [i ? ', ' : '', link('#/work-orders', h('code', {}, w.id)), ' ', badge(w.status), ` priority ${w.priority}${w.assignedTo ? `, ${w.assignedTo}` : ''}`]),
    ]);
  }
  return h(
    'section.card',
    { 'aria-labelledby': 'h-facts' },
    h('h2', { id: 'h-facts' }, 'Facts'),
    h(
      'dl.facts.order-facts',
      {},
      facts.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    ),
  );
}

const ruleColumns = [
  { label: 'Rule', cell: (r) => r.name },
  { label: 'Outcome', cell: (r) => badge(r.outcome, RULE_KIND[r.outcome] ?? r.outcome) },
  { label: 'Code', cell: (r) => (r.code ? h('code', {}, r.code) : '') },
  { label: 'Detail', cell: (r) => r.detail ?? '' },
];

function rulesSection(o) {
  const rules = (o.rules ?? []).filter((r) => r.outcome !== 'not_applicable');
  const other = (o.rules ?? []).filter((r) => r.outcome === 'not_applicable');
  return h(
    'section.card',
    { 'aria-labelledby': 'h-rules', id: 'order-rules' },
    h('h2', { id: 'h-rules' }, 'Rules'),
    h('p.muted', {}, 'What the rules last decided, from what is stored. "not checked": a rule before it held or stopped the order, so it was not evaluated.'),
    table('The rules this order passed or was stopped by', ruleColumns, rules, { stack: true, class: 'compact wrap', rowData: (r) => ({ rule: r.rule, outcome: r.outcome }) }),
    other.length
      ? h(
          'details',
          {},
          h('summary', {}, `Rules a ${orderWhat(o)} (${o.reason.replaceAll('_', ' ')}) does not go through (${other.length})`),
          table('Rules that do not apply to this order', ruleColumns, other, { stack: true, class: 'compact wrap', rowData: (r) => ({ rule: r.rule, outcome: r.outcome }) }),
        )
      : null,
  );
}

function attemptsSection(o) {
  const attempts = o.attempts ?? [];
  return h(
    'section.card.wide',
    { 'aria-labelledby': 'h-attempts', id: 'order-attempts' },
    h('h2', { id: 'h-attempts' }, `Attempts (${attempts.length})`),
    attempts.length === 0
      ? h('p', {}, 'No attempt has been made.')
      : h(
          'ol.attempts',
          {},
          attempts.map((a) =>
            h(
              'li.attempt',
              { dataset: { attempt: String(a.attempt) } },
              h('h3', {}, `Attempt ${a.attempt} `, badge(a.outcome ?? 'on the wire', ATTEMPT_KIND(a.outcome))),
              h(
                'dl.facts',
                {},
                h('dt', {}, 'Started'),
                h('dd', {}, fmtTime(a.startedAt)),
                h('dt', {}, 'Finished'),
                h('dd', {}, a.endedAt ? fmtTime(a.endedAt) : 'not yet'),
                h('dt', {}, 'Outcome'),
                h('dd', {}, (a.outcome ?? 'on the wire').replaceAll('_', ' ')),
                h('dt', {}, 'Relay read back'),
                h('dd', {}, a.observedRelay ?? '—'),
                h('dt', {}, 'Latency'),
                h('dd', {}, a.latencyMs === null ? '—' : `${Math.round(a.latencyMs)} ms`),
                a.detail ? [h('dt', {}, 'Detail'), h('dd', {}, a.detail)] : null,
              ),
              h('details.evidence', {}, h('summary', {}, `Evidence of attempt ${a.attempt}`), evidenceBlock('Command', a.evidence.command), evidenceBlock('Read-back', a.evidence.readBack)),
            ),
          ),
        ),
  );
}

function eventsSection(o) {
  const events = o.events ?? [];
  return h(
    'section.card.wide',
    { 'aria-labelledby': 'h-events', id: 'order-events' },
    h('h2', { id: 'h-events' }, 'Events'),
    table(
      `Every state change, oldest first (${events.length})`,
      [
        { label: 'When', cell: (e) => fmtTime(e.at) },
        { label: 'Change', cell: (e) => (e.from && e.from !== e.to ? [badge(e.from), ' → ', badge(e.to)] : e.from ? [badge(e.to), ' (stays)'] : badge(e.to)) },
        { label: 'By', cell: (e) => actorOf(e.reason) },
        { label: 'Why', cell: (e) => e.reason ?? '' },
      ],
      events,
      { stack: true, class: 'compact wrap' },
    ),
  );
}

function deliveriesSection(o, callbacks) {
  const notifications = o.notifications ?? [];
  const delivery = (deliveredAt, attempts, lastError) => (deliveredAt ? `delivered ${fmtTime(deliveredAt)} after ${attempts} attempt(s)` : `not delivered (${attempts} attempt(s))${lastError ? `: ${lastError}` : ''}`);
  return h(
    'section.card.wide',
    { 'aria-labelledby': 'h-deliveries', id: 'order-deliveries' },
    h('h2', { id: 'h-deliveries' }, 'Notifications and callbacks'),
    table(
      'Notifications about this order (customer notices, field)',
      [
        { label: 'Kind', cell: (n) => n.kind.replaceAll('_', ' ') },
        { label: 'Created', cell: (n) => fmtTime(n.createdAt) },
        { label: 'Delivery', cell: (n) => delivery(n.deliveredAt, n.attempts, n.lastError) },
      ],
      notifications,
      { stack: true, class: 'compact wrap', empty: 'No notification went out about this order.' },
    ),
    callbacks === null
      ? null
      : callbacks instanceof Error
        ? errorBox(callbacks)
        : table(
            `Callbacks to ${session.who?.name ?? 'this client'} about this order`,
            [
              { label: 'Seq', cell: (e) => String(e.seq) },
              { label: 'Event', cell: (e) => e.kind },
              { label: 'At', cell: (e) => fmtTime(e.at) },
              { label: 'Delivery', cell: (e) => delivery(e.delivery.deliveredAt, e.delivery.attempts, e.delivery.lastError) },
            ],
            callbacks,
            { stack: true, class: 'compact wrap', empty: 'No callback to this client about this order.' },
          ),
  );
}

export async function render(main, ctx) {
  const orderId = ctx.params.orderId;
  const heading = h('h1.order-title', {}, `Order ${orderId}`);
  const body = h('div.grid.order-page');
  main.append(heading, body);

  const load = async () => {
    let o;
    try {
      o = await api(`/v1/orders/${encodeURIComponent(orderId)}`);
    } catch (err) {
      if (err.code === 'E_ORDER_NOT_FOUND') fill(body, h('section.card.wide', {}, h('p', { id: 'order-missing' }, 'There is no such order: ', h('code', {}, orderId), '.'), errorBox(err), h('p', {}, link('#/orders', 'Back to the orders.'))));
      else fill(body, h('section.card.wide', {}, errorBox(err)));
      return;
    }
    // What the user may read beyond the order itself: work orders (field, operators) and this client's own callbacks.
    const [workOrders, callbacks] = await Promise.all([
      session.can('workorder:read') ? api(`/v1/work-orders${qs({ orderId, limit: 20 })}`).then((r) => r.items, () => null) : null,
      session.can('changes:read') ? api(`/v1/callbacks/deliveries${qs({ orderId, limit: 100 })}`).then((r) => r.items, (err) => err) : null,
    ]);
    // Keep the reader's open evidence open across a live reload.
    const open = new Set([...body.querySelectorAll('li.attempt details[open]')].map((d) => d.closest('li').dataset.attempt));
    fill(body, factsSection(o, workOrders), rulesSection(o), attemptsSection(o), eventsSection(o), deliveriesSection(o, callbacks));
    for (const li of body.querySelectorAll('li.attempt')) if (open.has(li.dataset.attempt)) li.querySelector('details').open = true;
  };
  await load();

  // Live: an `order` event for this order reloads the page's data (several in a burst: once).
  let soon = null;
  const off = onOrders((orders) => {
    if (!orders.some((x) => x.id === orderId) || soon) return;
    soon = setTimeout(() => {
      soon = null;
      void load();
    }, 200);
  });
  return () => {
    off();
    if (soon) clearTimeout(soon);
  };
}
