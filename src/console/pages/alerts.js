// Alerts (GET /v1/alerts), newest first, each with its state in words; acknowledge (seen, being handled) and clear
// (over) for those with alert:manage (POST /v1/alerts/{id}/acknowledge|clear).
import { api, qs, session } from '../api.js';
import { badge, errorBox, field, fill, fmtTime, h, newIdempotencyKey, select, table, showOutcome } from '../dom.js';

const STATES = ['open', 'acknowledged', 'cleared'];
const KIND_WORDS = {
  'alert.success_rate': 'success rate below threshold',
  'alert.success_rate_recovered': 'success rate recovered',
  'alert.circuit_open': 'circuit breaker opened',
  'alert.abnormal_consumption': 'abnormal consumption',
  'alert.register_discontinuity': 'energy register went down',
  'alert.relay_audit': 'relay audit exception',
};

const MEASURE_WORDS = { attempt: 'per attempt', first_attempt: 'at the first attempt', final: 'orders done remotely' };
const pctText = (x) => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : null);

/** What the alert is about, in words: the population (profile, link, region) or the meter, from its payload. */
export function alertSubject(a) {
  const p = a.payload && typeof a.payload === 'object' ? a.payload : {};
  if (typeof p.scope === 'string' && typeof p.key === 'string') return `${p.scope} ${p.key}${p.action ? `, ${p.action}` : ''}`;
  if (a.meterId && a.meterId !== '-') return `meter ${a.meterId}`;
  return 'the gateway';
}

/** The detail in words: the rate and window, the breaker's reason, the consumption, the relay-audit exception. */
export function alertDetail(a) {
  const p = a.payload && typeof a.payload === 'object' ? a.payload : {};
  if (a.kind === 'alert.circuit_open') return p.reason ?? 'new disconnects for this population are held until the breaker is reset';
  if (typeof p.rate === 'number') return `${pctText(p.rate)} ${MEASURE_WORDS[p.kind] ?? ''} (${p.ok}/${p.total}) over ${p.windowMinutes} min${typeof p.threshold === 'number' ? `, threshold ${pctText(p.threshold)}` : ''}`;
  if (typeof p.message === 'string') return p.message;
  if (typeof p.exception === 'string') return p.exception.replaceAll('_', ' ');
  return '—';
}

function whoActed(a) {
  const lines = [];
  if (a.acknowledgedBy) lines.push(h('div', {}, `acknowledged by ${a.acknowledgedBy}, ${fmtTime(a.acknowledgedAt)}`));
  if (a.clearedBy) lines.push(h('div', {}, `cleared by ${a.clearedBy}, ${fmtTime(a.clearedAt)}`));
  return lines.length ? lines : h('span.muted', {}, 'nobody yet');
}

export async function render(main, ctx) {
  const state = STATES.includes(ctx.query.get('state')) ? ctx.query.get('state') : '';
  const stateSelect = select('state', [['', 'any state'], ...STATES.map((s) => [s, s])], state);
  const list = h('div');
  const result = h('div', { id: 'alert-result', 'aria-live': 'polite' });
  const mayManage = session.can('alert:manage');
  main.append(
    h('h1', {}, 'Alerts'),
    h(
      'section.card',
      { 'aria-labelledby': 'h-alerts' },
      h('h2', { id: 'h-alerts' }, 'Alerts, newest first'),
      h(
        'form.inline-form',
        { onsubmit: (e) => (e.preventDefault(), ctx.navigate(`/alerts${qs({ state: stateSelect.value })}`)) },
        field('State', stateSelect),
        h('button', { type: 'submit' }, 'Apply'),
      ),
      h('p.muted', {}, 'An alert is open until someone acknowledges it (seen, being handled), then cleared (over).', mayManage ? '' : ' Your role may look but not acknowledge or clear.'),
      result,
      list,
    ),
  );

  const act = async (a, verb) => {
    await showOutcome(result, async () => {
      const done = await api(`/v1/alerts/${encodeURIComponent(a.id)}/${verb}`, { method: 'POST', body: {}, idempotencyKey: newIdempotencyKey(`alert-${verb}`) });
      return `Alert ${done.id} (${KIND_WORDS[done.kind] ?? done.kind}) is ${done.state}.`;
    });
    await load();
  };

  const load = async () => {
    try {
      const { items } = await api(`/v1/alerts${qs({ state, limit: 500 })}`);
      fill(
        list,
        table(
          `${items.length} alert(s)${state ? ` ${state}` : ''}`,
          [
            { label: 'State', cell: (a) => badge(a.state) },
            { label: 'When', cell: (a) => fmtTime(a.at) },
            { label: 'Kind', cell: (a) => KIND_WORDS[a.kind] ?? a.kind },
            { label: 'About', cell: (a) => (a.meterId && a.meterId !== '-' ? h('a', { href: `#/meters/${encodeURIComponent(a.meterId)}` }, alertSubject(a)) : alertSubject(a)) },
            { label: 'Detail', cell: (a) => alertDetail(a) },
            { label: 'Handled', cell: (a) => whoActed(a) },
            ...(mayManage
              ? [
                  {
                    label: 'Actions',
                    cell: (a) =>
                      a.state === 'cleared'
                        ? h('span.muted', {}, 'over')
                        : h(
                            'div.row-actions',
                            {},
                            a.state === 'open' ? h('button', { type: 'button', 'aria-label': `Acknowledge alert ${a.id}`, onclick: () => act(a, 'acknowledge') }, 'Acknowledge') : null,
                            h('button', { type: 'button', 'aria-label': `Clear alert ${a.id}`, onclick: () => act(a, 'clear') }, 'Clear'),
                          ),
                  },
                ]
              : []),
          ],
          items,
          { class: 'alerts', stack: true, empty: state ? `No ${state} alerts.` : 'No alerts.', rowData: (a) => ({ alert: a.id, state: a.state }) },
        ),
      );
    } catch (err) {
      fill(list, errorBox(err));
    }
  };
  await load();
  const timer = setInterval(load, 10_000);
  return () => clearInterval(timer);
}
