import { api, downloadWithKey, qs, session } from '../api.js';
import { stackedBar } from '../charts.js';
import { announce, badge, errorBox, field, fill, fmtDuration, fmtTime, h, newIdempotencyKey, orderWhat, select, table, timesIn } from '../dom.js';
import { onOrders } from '../live.js';

const STATES = ['accepted', 'held', 'queued', 'in_flight', 'escalated', 'done', 'armed', 'done_by_field', 'failed', 'cancelled', 'superseded', 'refused'];
const FINAL = new Set(['done', 'armed', 'done_by_field', 'failed', 'cancelled', 'superseded', 'refused']);
const SUCCESS = new Set(['done', 'armed', 'done_by_field']);
const RECONNECT_REASONS = ['payment', 'top_up', 'customer_request', 'safety_cleared', 'operator'];
/** Why a demand limit is set, and why one is removed (DOMAIN.md rule 10; the gateway checks them again). */
const LIMIT_REASONS = ['arrears', 'customer_request', 'safety'];
const LIMIT_REMOVAL_REASONS = ['payment', 'top_up', 'operator', 'customer_request'];
/** Every reason an order can give, for the list's filter. */
const ALL_REASONS = [...new Set(['arrears', 'credit_exhausted', 'customer_request', 'safety', 'vacant_premises', ...RECONNECT_REASONS, ...LIMIT_REASONS, ...LIMIT_REMOVAL_REASONS])];
/** The list's filters, named as GET /v1/orders names them (and as the console's URL carries them). */
const FILTERS = ['q', 'meterId', 'state', 'action', 'reason', 'requestedBy', 'note', 'createdFrom', 'createdTo'];
const PAGE_SIZE = 100;

// ---- bulk progress: kept for the whole tab, so it keeps counting while the user looks at other pages ----
let bulk = null;

/** Forget the last bulk: the next person to sign in on this tab does not see it (app.js calls this on sign-out and 401). */
export function reset() {
  bulk = null;
}

/**
 * A bulk refused for unknown meters names them: from the error's details (`missing`, the gateway's first 100), else
 * the ids sent that its message names. The count says when the gateway found more than it listed.
 */
export function unknownMeters(err, sent) {
  if (err?.code !== 'E_METER_NOT_FOUND') return null;
  const listed = err.details?.missing?.map((m) => m.meterId) ?? sent.filter((id) => (err.message ?? '').includes(id));
  const ids = [...new Set(listed)];
  return ids.length === 0 ? null : ids;
}
onOrders((orders) => {
  if (!bulk) return;
  const now = Date.now();
  for (const o of orders) {
    if (!bulk.states.has(o.id)) continue;
    const before = bulk.states.get(o.id);
    bulk.states.set(o.id, o.state);
    if (FINAL.has(o.state) && !FINAL.has(before)) bulk.finishedAt.push(now);
  }
  bulk.redraw?.();
});

/** Counts by state, share finished, finish rate over the last 30 s and the time left at that rate. */
export function bulkProgress(b, now = Date.now()) {
  const counts = {};
  for (const s of b.states.values()) counts[s] = (counts[s] ?? 0) + 1;
  const total = b.states.size;
  const finished = [...b.states.values()].filter((s) => FINAL.has(s)).length;
  const recent = b.finishedAt.filter((t) => t >= now - 30000).length;
  const elapsed = Math.min(30, (now - b.startedAt) / 1000);
  const perSecond = elapsed > 0 ? recent / elapsed : 0;
  const left = total - finished;
  return { counts, total, finished, left, perSecond, etaSeconds: left === 0 ? 0 : perSecond > 0 ? left / perSecond : Infinity };
}

/** Meter ids from pasted text or a file: a CSV with a meterId column, a JSON array of ids or of {meterId}, or one id per line. */
export function parseMeterList(text) {
  const t = text.trim();
  if (!t) return [];
  if (t.startsWith('[') || t.startsWith('{')) {
    const data = JSON.parse(t);
    const list = Array.isArray(data) ? data : (data.orders ?? data.meters ?? []);
    return list.map((x) => (typeof x === 'string' ? x : x.meterId)).filter(Boolean);
  }
  const lines = t.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const header = lines[0].split(',').map((c) => c.trim().replace(/^"|"$/g, ''));
  const col = header.findIndex((c) => /^meter_?id$/i.test(c));
  if (col >= 0) return lines.slice(1).map((l) => l.split(',')[col]?.trim().replace(/^"|"$/g, '')).filter(Boolean);
  return lines.flatMap((l) => l.split(/[\s,;]+/)).filter(Boolean);
}

/**
 * One page of orders, newest first: after a cursor (older orders), or the page just newer than `before` (asked
 * oldest first from there, then turned round). Null when nothing is newer than `before`'s page: the newest page it is.
 */
async function loadPage(filters, after, before) {
  if (!before) return api(`/v1/orders${qs({ ...filters, after, limit: PAGE_SIZE })}`);
  const newer = await api(`/v1/orders${qs({ ...filters, order: 'asc', after: before, limit: PAGE_SIZE + 1 })}`);
  if (newer.items.length <= PAGE_SIZE) return null;
  const items = newer.items.slice(0, PAGE_SIZE).reverse();
  return { items, next: items[items.length - 1].id };
}

/** Whether a live order belongs on the first page of these filters: the same tests the API applies. */
export function matchesFilters(o, f) {
  const created = Date.parse(o.createdAt);
  return (
    (!f.q || o.id.startsWith(f.q)) &&
    (!f.meterId || o.meterId === f.meterId) &&
    (!f.state || o.state === f.state) &&
    (!f.action || o.action === f.action) &&
    (!f.reason || o.reason === f.reason) &&
    (!f.requestedBy || o.requestedBy === f.requestedBy) &&
    (!f.note || (o.note ?? '').includes(f.note)) &&
    (!f.createdFrom || created >= Date.parse(f.createdFrom)) &&
    (!f.createdTo || created < Date.parse(f.createdTo))
  );
}

/** A datetime-local input's value (the user's local time, no zone) as ISO UTC; '' stays ''. */
const isoFromLocal = (v) => (v ? new Date(v).toISOString() : '');
/** An ISO time as a datetime-local input shows it, in the user's local time. */
function localInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export async function render(main, ctx) {
  main.append(h('h1', {}, 'Orders'));

  // ---- bulk ----
  const bulkBox = h('section.card', { 'aria-labelledby': 'h-bulk' });
  const progressBox = h('div', { id: 'bulk-progress' });
  const drawBulk = () => {
    if (!bulk) return fill(progressBox);
    const p = bulkProgress(bulk);
    const ok = Object.entries(p.counts).filter(([s]) => SUCCESS.has(s)).reduce((a, [, n]) => a + n, 0);
    fill(
      progressBox,
      h('h3', {}, `Bulk ${bulk.action}: ${p.finished} of ${p.total} finished`),
      h('progress', { max: p.total, value: p.finished, 'aria-label': `bulk ${bulk.action} progress` }),
      stackedBar('Bulk orders by state', STATES.map((s) => ({ label: s, value: p.counts[s] ?? 0, kind: s }))),
      h('ul.legend', {}, STATES.filter((s) => p.counts[s]).map((s) => h('li', {}, badge(s), ` ${p.counts[s]}`))),
      h(
        'p',
        {},
        `${ok} succeeded, ${p.left} still open. `,
        p.left === 0 ? 'All finished.' : p.perSecond > 0 ? `About ${fmtDuration(p.etaSeconds)} left at ${(p.perSecond * 60).toFixed(0)} per minute.` : 'Waiting for the first orders to finish…',
      ),
      bulk.refused > 0 ? h('p.warning', {}, `${bulk.refused} refused at once by a rule (see the orders below, state "refused").`) : null,
    );
  };
  if (session.can('order:bulk')) {
    const action = select('action', session.can('order:limit') ? ['reconnect', 'disconnect', 'limit'] : ['reconnect', 'disconnect'], 'reconnect');
    const reason = select('reason', RECONNECT_REASONS, 'payment');
    // Disconnect reasons: only those this key may use (GET /v1/whoami, DOMAIN.md rule 7).
    const disconnectReasons = session.who.disconnectReasons ?? [];
    const reference = h('input', { type: 'text', name: 'reference', maxlength: 200, autocomplete: 'off', disabled: true });
    // A limit line: the demand in watts, or none to remove the limit (DOMAIN.md rule 10).
    const watts = h('input', { type: 'number', name: 'limitW', min: 1, max: 1000000, step: 1, inputmode: 'numeric', disabled: true, placeholder: 'empty: remove the limit' });
    const reasonsFor = () => (action.value === 'reconnect' ? RECONNECT_REASONS : action.value === 'disconnect' ? disconnectReasons : watts.value === '' ? LIMIT_REMOVAL_REASONS : LIMIT_REASONS);
    const setReasons = () => {
      const list = reasonsFor();
      if (list.includes(reason.value) && reason.options.length === list.length) return;
      reason.replaceChildren(...list.map((r) => h('option', { value: r }, r)));
    };
    action.addEventListener('change', () => {
      setReasons();
      reference.disabled = action.value === 'reconnect';
      reference.required = action.value === 'disconnect';
      watts.disabled = action.value !== 'limit';
    });
    watts.addEventListener('input', setReasons);
    const ids = h('textarea', { rows: 3, name: 'meters', placeholder: 'M-1, M-2 … or one per line' });
    const file = h('input', { type: 'file', accept: '.csv,.json,.txt,text/csv,application/json' });
    file.addEventListener('change', async () => {
      if (file.files?.[0]) ids.value = await file.files[0].text();
    });
    const status = h('div', { 'aria-live': 'polite' });
    bulkBox.append(
      h('h2', { id: 'h-bulk' }, 'Bulk order'),
      h(
        'form.inline-form',
        {
          onsubmit: async (e) => {
            e.preventDefault();
            fill(status);
            let meters;
            try {
              meters = [...new Set(parseMeterList(ids.value))];
            } catch (err) {
              return fill(status, errorBox({ code: 'E_VALIDATION', message: `cannot read the list: ${err.message}` }));
            }
            if (meters.length === 0) return fill(status, errorBox({ code: 'E_VALIDATION', message: 'name at least one meter' }));
            try {
              const extra = action.value === 'disconnect' || (action.value === 'limit' && reference.value.trim()) ? { reference: reference.value.trim() } : {};
              if (action.value === 'limit') extra.limitW = watts.value === '' ? null : Number(watts.value);
              const res = await api('/v1/orders/bulk', { method: 'POST', idempotencyKey: newIdempotencyKey('bulk'), body: { orders: meters.map((m) => ({ meterId: m, action: action.value, reason: reason.value, ...extra })) } });
              bulk = { action: action.value, startedAt: Date.now(), states: new Map(res.results.map((r) => [r.order.id, r.order.state])), finishedAt: [], refused: res.refused, redraw: null };
              bulk.redraw = drawBulk;
              announce(`bulk ${action.value} created: ${res.created} orders, ${res.refused} refused`);
              drawBulk();
            } catch (err) {
              const unknown = unknownMeters(err, meters);
              fill(
                status,
                errorBox(err),
                unknown
                  ? h('div.unknown-meters', {}, h('p', {}, `Meters not registered (${unknown.length}): remove them from the list or register them first.`), h('ul.meter-ids', { 'aria-label': 'Unknown meters' }, unknown.map((id) => h('li', {}, h('code', {}, id)))))
                  : null,
              );
            }
          },
        },
        field('Action', action),
        field('Reason', reason),
        field('Reference', reference, 'disconnects, and limits for a customer request or safety: the request, move-out record or incident'),
        field('Limit (W)', watts, 'limit orders: the demand each customer keeps, verified by read-back'),
        field('Meters', ids, 'ids separated by commas or lines, or load a CSV (meterId column) or JSON file'),
        field('Or load a file', file),
        h('button.primary', { type: 'submit' }, 'Create bulk orders'),
      ),
      status,
      progressBox,
    );
  } else if (bulk) {
    bulkBox.append(h('h2', { id: 'h-bulk' }, 'Bulk order'), progressBox);
  }
  if (bulk) bulk.redraw = drawBulk;
  drawBulk();
  if (bulkBox.childNodes.length) main.append(bulkBox);

  // ---- list: one page at a time from the server, newest first; the URL holds the filters and the cursor ----
  const filters = Object.fromEntries(FILTERS.map((k) => [k, ctx.query.get(k) ?? '']));
  const after = ctx.query.get('after') ?? '';
  const before = ctx.query.get('before') ?? '';
  const input = (name, attrs = {}) => h('input', { name, value: filters[name], ...attrs });
  const controls = {
    q: input('q', { type: 'search', placeholder: 'ord_… (the whole id or its start)', autocomplete: 'off' }),
    meterId: input('meterId', { placeholder: 'e.g. SIM-000001' }),
    state: select('state', [['', 'any state'], ...STATES.map((s) => [s, s.replaceAll('_', ' ')])], filters.state),
    action: select('action', [['', 'any type'], 'disconnect', 'reconnect', 'limit'], filters.action),
    reason: select('reason', [['', 'any'], ...ALL_REASONS.map((r) => [r, r.replaceAll('_', ' ')])], filters.reason),
    requestedBy: input('requestedBy', { placeholder: 'client id, e.g. demo-billing' }),
    note: input('note', { placeholder: 'words in the note' }),
    createdFrom: h('input', { type: 'datetime-local', name: 'createdFrom', value: localInput(filters.createdFrom) }),
    createdTo: h('input', { type: 'datetime-local', name: 'createdTo', value: localInput(filters.createdTo) }),
  };
  /** The filters as the form holds them, times as ISO (UTC) for the API. */
  const formFilters = () => ({
    ...Object.fromEntries(FILTERS.map((k) => [k, controls[k].value.trim()])),
    createdFrom: isoFromLocal(controls.createdFrom.value),
    createdTo: isoFromLocal(controls.createdTo.value),
  });
  const go = (extra = {}) => ctx.navigate(`/orders${qs({ ...filters, ...extra })}`);
  const exportLink = h('a', { href: `/v1/orders/export${qs(filters)}`, download: 'orders.csv', onclick: (e) => (e.preventDefault(), downloadWithKey(exportLink.href, 'orders.csv')) }, 'Export CSV');
  const listBox = h('div', { id: 'order-list' });
  const navBox = h('nav.pager', { 'aria-label': 'Order pages' });
  main.append(
    h(
      'section.card',
      { 'aria-labelledby': 'h-list' },
      h('h2', { id: 'h-list' }, 'Find orders'),
      h(
        'form.inline-form',
        {
          role: 'search',
          onsubmit: (e) => {
            e.preventDefault();
            ctx.navigate(`/orders${qs(formFilters())}`);
          },
        },
        field('Order id', controls.q),
        field('Meter', controls.meterId),
        field('State', controls.state),
        field('Type', controls.action),
        field('Because', controls.reason),
        field('Asked by', controls.requestedBy),
        field('Note contains', controls.note),
        field('Created from', controls.createdFrom),
        field('Created before', controls.createdTo),
        h('button', { type: 'submit' }, 'Apply'),
      ),
      h('p', {}, exportLink, ' ', h('span.muted', {}, 'every order these filters match, newest first')),
      session.can('order:cancel') ? h('p.muted', {}, 'An order not on the wire (queued, held, escalated) can be cancelled with a reason; the cancellation is audited.') : null,
      listBox,
      navBox,
    ),
  );

  const replaceOrder = (o) => {
    const i = orders.findIndex((x) => x.id === o.id);
    if (i >= 0) orders[i] = o;
    draw();
  };
  const cancelOrder = async (o) => {
    const reason = window.prompt(`Why cancel the ${o.action} order ${o.id} for meter ${o.meterId}?`);
    if (!reason || reason.trim().length < 3) return;
    try {
      replaceOrder(await api(`/v1/orders/${encodeURIComponent(o.id)}/cancel`, { method: 'POST', body: { reason: reason.trim() }, idempotencyKey: newIdempotencyKey() }));
    } catch (err) {
      window.alert(err instanceof Error ? err.message : String(err));
    }
  };
  const approveOrder = async (o) => {
    if (!window.confirm(`Approve the ${o.reason} disconnect of meter ${o.meterId} (reference ${o.reference ?? '-'}, asked for by ${o.requestedBy})? The customer is protected; every other rule still applies.`)) return;
    try {
      replaceOrder(await api(`/v1/orders/${encodeURIComponent(o.id)}/approve`, { method: 'POST', idempotencyKey: newIdempotencyKey() }));
    } catch (err) {
      window.alert(err instanceof Error ? err.message : String(err));
    }
  };
  let orders = [];
  let next = null;
  const firstPage = !after && !before;
  const draw = () => {
    fill(
      listBox,
      table(
        `${orders.length} order(s) on this page, newest first`,
        [
          { label: 'Order', cell: (o) => h('a', { href: `#/orders/${encodeURIComponent(o.id)}` }, h('code', {}, o.id)) },
          { label: 'Meter', cell: (o) => h('a', { href: `#/meters/${encodeURIComponent(o.meterId)}` }, o.meterId) },
          { label: 'Action', cell: (o) => `${orderWhat(o)}${o.urgent ? ' (urgent)' : ''}` },
          { label: 'State', cell: (o) => badge(o.state) },
          { label: 'Why', cell: (o) => timesIn(o.stateReason ?? '') },
          { label: 'Reason', cell: (o) => o.reason },
          { label: 'By', cell: (o) => o.requestedBy },
          { label: 'Note', cell: (o) => o.note ?? '' },
          { label: 'Attempts', cell: (o) => String(o.attemptsUsed), class: 'num' },
          { label: 'Created', cell: (o) => fmtTime(o.createdAt) },
          { label: 'Deadline', cell: (o) => fmtTime(o.deadline) },
          ...(session.can('order:cancel')
            ? [
                {
                  label: 'Cancel',
                  cell: (o) =>
                    ['queued', 'held', 'escalated', 'accepted'].includes(o.state)
                      ? h('button', { type: 'button', 'aria-label': `Cancel order ${o.id}`, onclick: () => cancelOrder(o) }, 'Cancel')
                      : '',
                },
              ]
            : []),
          ...(session.can('order:approve')
            ? [
                {
                  label: 'Approve',
                  cell: (o) =>
                    o.action === 'disconnect' && (o.stateReason ?? '').startsWith('E_APPROVAL_REQUIRED') && o.requestedBy !== session.who.clientId
                      ? h('button', { type: 'button', 'aria-label': `Approve disconnect ${o.id} (${o.reason}, ${o.reference ?? 'no reference'})`, onclick: () => approveOrder(o) }, 'Approve')
                      : '',
                },
              ]
            : []),
        ],
        orders,
        { empty: 'No orders match.', rowData: (o) => ({ order: o.id }), stack: true },
      ),
    );
    fill(
      navBox,
      firstPage ? null : h('button', { type: 'button', onclick: () => go({ before: orders[0]?.id ?? after }) }, 'Newer'),
      firstPage ? null : h('button', { type: 'button', onclick: () => go() }, 'Newest'),
      next ? h('button', { type: 'button', onclick: () => go({ after: next }) }, 'Next page') : null,
    );
  };
  try {
    const page = await loadPage(filters, after, before);
    if (page === null) return go(); // nothing newer than the cursor: the first page is the newest
    ({ items: orders, next } = page);
  } catch (err) {
    fill(listBox, errorBox(err));
    return;
  }
  draw();
  // Live: orders on this page change state in place; on the first page, a new order that matches is put on top.
  let pending = false;
  const off = onOrders((batch) => {
    const byId = new Map(orders.map((o, i) => [o.id, i]));
    for (const o of batch) {
      const i = byId.get(o.id);
      if (i !== undefined) orders[i] = o;
      else if (firstPage && matchesFilters(o, filters)) orders.unshift(o);
    }
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  });
  return () => {
    off();
    if (bulk) bulk.redraw = null;
  };
}
