import { api, qs, session } from '../api.js';
import { announce, badge, errorBox, field, fill, fmtTime, h, newIdempotencyKey, orderWhat, select, table, timesIn } from '../dom.js';
import { onOrders } from '../live.js';

const RECONNECT_REASONS = ['payment', 'top_up', 'customer_request', 'safety_cleared', 'operator'];
/** Why a demand limit is set, and why one is removed (DOMAIN.md rule 10; the gateway checks them again). */
const LIMIT_REASONS = ['arrears', 'customer_request', 'safety'];
const LIMIT_REMOVAL_REASONS = ['payment', 'top_up', 'operator', 'customer_request'];
/** The live read in words: a meter that refuses our keys answered; it is not a dead meter. */
const LIVE_READ_WORDS = { ok: 'ok', failed: 'failed', auth_failed: "the meter refused the gateway's credentials", not_tried: 'not tried' };

/** #/meters: open a meter by id. #/meters/<id>: the meter page. */
export async function render(main, ctx) {
  if (!ctx.params.meterId) return renderSearch(main, ctx);
  return renderMeter(main, ctx, ctx.params.meterId);
}

const PAGE_SIZE = 50;

/** A relay as last observed, in words that are true: "never read" only when the meter has no reading at all. */
export function relayWords(relay, observedAt) {
  if (!observedAt) return badge('never read', 'unknown');
  return relay === 'unknown' ? badge('relay not known', 'unknown') : badge(relay);
}

/** The meters as GET /v1/fleet lists them, whose id, region, link, profile or relay contain the search words. */
export function searchMeters(meters, words) {
  const w = words.trim().toLowerCase();
  if (!w) return meters;
  return meters.filter((m) => [m.meterId, m.region, m.link, m.profileId, m.relay].some((v) => String(v).toLowerCase().includes(w)));
}

/** #/meters?q=…&page=…: every meter, 50 to a page, searched in the browser; the URL keeps the search and page. */
async function renderSearch(main, ctx) {
  const input = h('input', { name: 'meterId', required: true, placeholder: 'e.g. SIM-000001', autocomplete: 'off' });
  const words = ctx.query.get('q') ?? '';
  const pageNo = Math.max(1, Number(ctx.query.get('page')) || 1);
  const search = h('input', { name: 'q', type: 'search', value: words, placeholder: 'id, region, link, profile or relay', autocomplete: 'off' });
  const listBox = h('div', { id: 'meter-list' });
  const pager = h('nav.pager', { 'aria-label': 'Meter pages' });
  main.append(
    h('h1', {}, 'Meters'),
    h(
      'form.card.inline-form',
      { role: 'search', 'aria-label': 'Open a meter', onsubmit: (e) => { e.preventDefault(); ctx.navigate(`/meters/${encodeURIComponent(input.value.trim())}`); } },
      field('Meter id', input),
      h('button.primary', { type: 'submit' }, 'Open meter'),
    ),
    h(
      'section.card',
      { 'aria-labelledby': 'h-meters' },
      h('h2', { id: 'h-meters' }, 'All meters'),
      h('form.inline-form', { role: 'search', 'aria-label': 'Search meters', onsubmit: (e) => { e.preventDefault(); ctx.navigate(`/meters${qs({ q: search.value.trim() })}`); } }, field('Search meters', search), h('button', { type: 'submit' }, 'Search')),
      listBox,
      pager,
    ),
  );
  let fleet;
  try {
    fleet = await api('/v1/fleet');
  } catch (err) {
    fill(listBox, errorBox(err));
    return;
  }
  const found = searchMeters(fleet.meters, words);
  const pages = Math.max(1, Math.ceil(found.length / PAGE_SIZE));
  const p = Math.min(pageNo, pages);
  const rows = found.slice((p - 1) * PAGE_SIZE, p * PAGE_SIZE);
  const listedNote = fleet.listed < fleet.total ? ` (the gateway lists the first ${fleet.listed} of ${fleet.total} by id)` : '';
  fill(
    listBox,
    table(
      `Meters ${found.length === 0 ? 0 : (p - 1) * PAGE_SIZE + 1}–${(p - 1) * PAGE_SIZE + rows.length} of ${found.length}${words ? ` matching "${words}"` : ''}${listedNote}`,
      [
        { label: 'Meter', cell: (m) => h('a', { href: `#/meters/${encodeURIComponent(m.meterId)}` }, m.meterId) },
        { label: 'Relay', cell: (m) => relayWords(m.relay, m.observedAt) },
        { label: 'Region', cell: (m) => m.region },
        { label: 'Link', cell: (m) => m.link },
        { label: 'Profile', cell: (m) => m.profileId },
        { label: 'Last reading', cell: (m) => (m.observedAt ? `${fmtTime(m.observedAt)}${m.voltageV !== null ? `, ${m.voltageV} V` : ''}` : 'none') },
      ],
      rows,
      { class: 'compact meters', stack: true, empty: words ? 'No meter matches.' : 'No meters are registered.', rowData: (m) => ({ meter: m.meterId }) },
    ),
  );
  const go = (n) => ctx.navigate(`/meters${qs({ q: words, page: n > 1 ? n : '' })}`);
  fill(
    pager,
    p > 1 ? h('button', { type: 'button', onclick: () => go(p - 1) }, 'Previous page') : null,
    h('span.muted', {}, ` Page ${p} of ${pages} `),
    p < pages ? h('button', { type: 'button', onclick: () => go(p + 1) }, 'Next page') : null,
  );
}

const SUPPLY_CLASS = {
  on_supply: 'connected',
  disconnected_by_order: 'disconnected',
  armed_waiting_for_customer: 'armed',
  supply_fault: 'fault',
  disconnected_without_order: 'fault',
  on_supply_against_order: 'fault',
  armed_against_order: 'fault',
  reconnect_refused_load_side: 'fault',
  unknown: 'unknown',
};

async function renderMeter(main, ctx, meterId) {
  const stateBox = h('section.card', { 'aria-labelledby': 'h-state' });
  const supplyBox = h('section.card', { 'aria-labelledby': 'h-supply' });
  const actionBox = h('section.card', { 'aria-labelledby': 'h-actions' });
  const timelineBox = h('section.card.wide', { 'aria-labelledby': 'h-timeline' });
  main.append(h('h1', {}, `Meter ${meterId}`), h('div.grid', {}, stateBox, supplyBox, actionBox, timelineBox));

  const loadState = async () => {
    try {
      const m = await api(`/v1/meters/${encodeURIComponent(meterId)}`);
      const flags = Object.entries(m.flags).filter(([, v]) => v === true || (typeof v === 'string' && v));
      fill(
        stateBox,
        h('h2', { id: 'h-state' }, 'Current state'),
        h(
          'dl.facts',
          {},
          h('dt', {}, 'Relay (last observed)'),
          h('dd', { id: 'meter-relay' }, relayWords(m.observed?.relay, m.observed?.at)),
          h('dt', {}, 'Last reading'),
          h('dd', { id: 'meter-last-reading' }, m.observed ? `${fmtTime(m.observed.at)} by ${m.observed.source}${m.observed.voltageV !== null && m.observed.voltageV !== undefined ? `, ${m.observed.voltageV} V` : ''}` : 'none yet'),
          h('dt', {}, 'Desired'),
          h('dd', {}, m.desiredRelay ?? '—'),
          h('dt', {}, 'Demand limit'),
          h('dd', { id: 'meter-limit' }, m.loadLimit ? `${m.loadLimit.limitW} W (${m.loadLimit.reason}) since ${fmtTime(m.loadLimit.since)}` : 'none'),
          h('dt', {}, 'Profile'),
          h('dd', {}, m.profile ? `${m.profile.manufacturer} ${m.profile.model} fw ${m.profile.firmware} (${m.profile.protocol}; remote reconnect ${m.profile.remoteReconnect})` : m.profileId),
          h('dt', {}, 'Region / link'),
          h('dd', {}, `${m.region} / ${m.link}${m.address ? ` @ ${m.address}` : ''}`),
          h('dt', {}, 'Flags'),
          h('dd', {}, flags.length ? flags.map(([k, v]) => (v === true ? k : `${k}: ${v}`)).join(', ') : 'none'),
        ),
        h('h3', {}, 'Open orders'),
        table(
          'Open orders',
          [
            { label: 'Order', cell: (o) => h('a', { href: `#/orders/${encodeURIComponent(o.id)}` }, h('code', {}, o.id)) },
            { label: 'Action', cell: (o) => orderWhat(o) },
            { label: 'State', cell: (o) => badge(o.state) },
            { label: 'Why', cell: (o) => timesIn(o.stateReason ?? '') },
            { label: 'Deadline', cell: (o) => fmtTime(o.deadline) },
          ],
          m.openOrders,
          { class: 'compact', stack: true, empty: 'No open orders.' },
        ),
      );
    } catch (err) {
      fill(stateBox, h('h2', { id: 'h-state' }, 'Current state'), errorBox(err));
    }
  };

  let supplySeq = 0;
  const loadSupply = async (refresh) => {
    const seq = ++supplySeq;
    fill(supplyBox, h('h2', { id: 'h-supply' }, 'Fault or disconnect?'), h('p.muted', {}, refresh ? 'Reading the meter…' : 'Loading…'));
    try {
      const s = await api(`/v1/meters/${encodeURIComponent(meterId)}/supply?refresh=${refresh}`);
      if (seq !== supplySeq) return; // a later request (e.g. after an order finished) has the newer answer
      fill(
        supplyBox,
        h('h2', { id: 'h-supply' }, 'Fault or disconnect?'),
        h('p.big', { id: 'supply-status' }, badge(s.status, SUPPLY_CLASS[s.status] ?? s.status)),
        h('p', { id: 'supply-sentence' }, timesIn(s.sentence)),
        h('p.muted', {}, `Live read: ${LIVE_READ_WORDS[s.liveRead] ?? s.liveRead.replaceAll('_', ' ')}${s.liveReadDetail ? ` (${s.liveReadDetail})` : ''}.${s.since ? ` Since ${fmtTime(s.since)}.` : ''}`),
        h('button', { type: 'button', onclick: () => void loadSupply(true) }, 'Read the meter now'),
      );
    } catch (err) {
      if (seq !== supplySeq) return;
      fill(supplyBox, h('h2', { id: 'h-supply' }, 'Fault or disconnect?'), errorBox(err));
    }
  };

  const timelineFilter = new Set(['order', 'attempt', 'notice', 'notification', 'reading', 'audit']);
  let timeline = [];
  const timelineList = h('div');
  const drawTimeline = () => {
    const items = timeline.filter((i) => timelineFilter.has(i.kind)).slice().reverse();
    fill(
      timelineList,
      table(
        `Timeline, newest first (${items.length})`,
        [
          { label: 'When', cell: (i) => fmtTime(i.at) },
          { label: 'Kind', cell: (i) => i.kind },
          { label: 'What', cell: (i) => timesIn(i.summary) },
          { label: 'Order', cell: (i) => (i.orderId ? h('a', { href: `#/orders/${encodeURIComponent(i.orderId)}` }, h('code', {}, i.orderId)) : '') },
        ],
        items.slice(0, 300),
        { class: 'compact timeline', stack: true, empty: 'Nothing has happened to this meter yet.' },
      ),
    );
  };
  const loadTimeline = async () => {
    try {
      timeline = (await api(`/v1/meters/${encodeURIComponent(meterId)}/timeline?limit=1000`)).items;
      drawTimeline();
    } catch (err) {
      fill(timelineList, errorBox(err));
    }
  };
  timelineBox.append(
    h('h2', { id: 'h-timeline' }, 'Timeline'),
    h(
      'fieldset.kinds',
      {},
      h('legend', {}, 'Show'),
      [...timelineFilter].map((k) =>
        h('label.check', {}, h('input', { type: 'checkbox', checked: true, onchange: (e) => { if (e.target.checked) timelineFilter.add(k); else timelineFilter.delete(k); drawTimeline(); } }), ` ${k}s`),
      ),
    ),
    timelineList,
  );

  // ---- switching: only for roles that may, and through the same API and rules as everyone ----
  const result = h('div', { id: 'action-result', 'aria-live': 'polite' });
  let watching = null;
  const showOrder = (o) => {
    watching = o.id;
    fill(result, h('p.order-result', {}, `Order `, h('code', {}, o.id), ` (${orderWhat(o)}): `, badge(o.state), o.stateReason ? ` — ${o.stateReason}` : ''));
  };
  const submit = async (action, body) => {
    fill(result, h('p.muted', {}, `Sending the ${action}…`));
    try {
      const o = await api(`/v1/meters/${encodeURIComponent(meterId)}/${action}`, { method: 'POST', idempotencyKey: newIdempotencyKey(action), body });
      showOrder(o);
      announce(`${action} order ${o.id} ${o.state}`);
      void loadState();
    } catch (err) {
      fill(result, errorBox(err));
      announce(`${action} refused: ${err.code}`);
    }
  };
  const canReconnect = session.can('order:reconnect');
  // Only the reasons this key may use (GET /v1/whoami, DOMAIN.md rule 7); the gateway checks them again.
  const disconnectReasons = session.who.disconnectReasons ?? [];
  const canDisconnect = session.can('order:disconnect') && disconnectReasons.length > 0;
  const canLimit = session.can('order:limit');
  actionBox.append(h('h2', { id: 'h-actions' }, 'Switch'));
  if (!canReconnect && !canDisconnect && !canLimit) {
    actionBox.append(h('p', {}, `The ${session.who.role} role cannot switch meters; this page is read-only.`));
  }
  if (canReconnect) {
    const reason = select('reason', RECONNECT_REASONS, 'operator');
    const paidAt = h('input', { type: 'datetime-local', name: 'paymentAt' });
    const urgent = h('input', { type: 'checkbox', name: 'urgent' });
    actionBox.append(
      h(
        'form.inline-form',
        {
          'aria-label': 'Reconnect',
          onsubmit: (e) => {
            e.preventDefault();
            const body = { reason: reason.value, urgent: urgent.checked };
            if (paidAt.value) body.paymentReceivedAt = new Date(paidAt.value).toISOString();
            void submit('reconnect', body);
          },
        },
        field('Reconnect reason', reason),
        field('Payment received', paidAt, 'optional; the 24-hour limit runs from it'),
        h('label.check', {}, urgent, ' Urgent (medical)'),
        h('button.primary', { type: 'submit' }, 'Reconnect'),
      ),
    );
  }
  if (canDisconnect) {
    const reason = select('reason', disconnectReasons, disconnectReasons[0]);
    const reference = h('input', { type: 'text', name: 'reference', required: true, maxlength: 200, autocomplete: 'off' });
    actionBox.append(
      h(
        'form.inline-form',
        {
          'aria-label': 'Disconnect',
          onsubmit: (e) => {
            e.preventDefault();
            if (!confirm(`Disconnect meter ${meterId} (${reason.value}, ${reference.value})? Every disconnect rule applies.`)) return;
            void submit('disconnect', { reason: reason.value, reference: reference.value.trim() });
          },
        },
        field('Disconnect reason', reason),
        field('Reference', reference, 'the customer’s request, the move-out record or the incident'),
        h('button.danger', { type: 'submit' }, 'Disconnect'),
      ),
    );
  }
  if (canLimit) {
    const watts = h('input', { type: 'number', name: 'limitW', min: 1, max: 1000000, step: 1, required: true, inputmode: 'numeric' });
    const remove = h('input', { type: 'checkbox', name: 'remove' });
    const reason = select('reason', LIMIT_REASONS, 'arrears');
    const reference = h('input', { type: 'text', name: 'reference', maxlength: 200, autocomplete: 'off' });
    remove.addEventListener('change', () => {
      watts.disabled = remove.checked;
      watts.required = !remove.checked;
      reason.replaceChildren(...(remove.checked ? LIMIT_REMOVAL_REASONS : LIMIT_REASONS).map((r) => h('option', { value: r }, r)));
    });
    actionBox.append(
      h(
        'form.inline-form',
        {
          'aria-label': 'Demand limit',
          onsubmit: (e) => {
            e.preventDefault();
            const body = { limitW: remove.checked ? null : Number(watts.value), reason: reason.value };
            if (reference.value.trim()) body.reference = reference.value.trim();
            void submit('limit', body);
          },
        },
        field('Limit (W)', watts, 'the demand the customer keeps; verified by read-back'),
        h('label.check', {}, remove, ' Remove the limit'),
        field('Limit reason', reason),
        field('Limit evidence', reference, 'customer_request and safety: the request or the incident'),
        h('button', { type: 'submit' }, 'Set limit'),
      ),
    );
  }
  actionBox.append(result);

  await Promise.all([loadState(), loadTimeline()]);
  void loadSupply(true);
  let soon = null;
  let finished = false;
  const off = onOrders((orders) => {
    const mine = orders.filter((o) => o.meterId === meterId);
    if (mine.length === 0) return;
    const watched = mine.find((o) => o.id === watching);
    if (watched) showOrder(watched);
    if (mine.some((o) => ['done', 'armed', 'done_by_field', 'failed'].includes(o.state))) finished = true;
    if (soon) return;
    soon = setTimeout(() => {
      soon = null;
      void loadState();
      void loadTimeline();
      if (finished) void loadSupply(false);
      finished = false;
    }, 300);
  });
  return () => {
    off();
    if (soon) clearTimeout(soon);
  };
}
