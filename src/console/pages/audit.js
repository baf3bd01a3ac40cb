// The audit log (GET /v1/audit): filtered by actor, action and time, newest first, a page at a time; the chain
// verified on demand (GET /v1/audit/verify); the filtered entries exported as CSV (GET /v1/audit/export).
import { api, downloadWithKey, qs } from '../api.js';
import { errorBox, field, fill, fmtTime, h, table } from '../dom.js';

const PAGE = 50;

/** A datetime-local value ("2026-11-24T09:05") in the browser's zone, as an ISO instant; '' stays ''. */
const localToIso = (v) => (v ? new Date(v).toISOString() : '');
/** An ISO instant as a datetime-local value in the browser's zone. */
const isoToLocal = (iso) => {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
};

/** The verify answer in words: intact (how many entries, anchors), or broken at which entry and why. */
export function verifyWords(v) {
  if (v.ok) return `The chain is intact: ${v.entries} entries verified${typeof v.anchorsChecked === 'number' ? `, ${v.anchorsChecked} anchor(s) checked` : ''}.`;
  return `The chain is broken${typeof v.badSeq === 'number' ? ` at entry ${v.badSeq}` : ''}: ${v.problem}`;
}

/** The details of an entry, short: the note or reason when there is one, else the JSON cut to 160 characters. */
function detailsText(d) {
  if (d === null || d === undefined) return '—';
  const text = typeof d === 'string' ? d : JSON.stringify(d);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

export async function render(main, ctx) {
  const q = ctx.query;
  const filters = { actor: q.get('actor') ?? '', action: q.get('action') ?? '', from: q.get('from') ?? '', to: q.get('to') ?? '' };
  const before = q.get('before') ?? '';
  const actor = h('input', { name: 'actor', value: filters.actor, placeholder: 'e.g. demo-operator', autocomplete: 'off' });
  const action = h('input', { name: 'action', value: filters.action, placeholder: 'e.g. alert.clear or alert.', autocomplete: 'off' });
  const from = h('input', { name: 'from', type: 'datetime-local', value: isoToLocal(filters.from) });
  const to = h('input', { name: 'to', type: 'datetime-local', value: isoToLocal(filters.to) });
  const list = h('div');
  const verifyOut = h('div', { id: 'verify-result', 'aria-live': 'polite' });
  const exportLink = h('a', { href: `/v1/audit/export${qs({ ...filters, format: 'csv' })}`, download: 'audit.csv', onclick: (e) => (e.preventDefault(), downloadWithKey(exportLink.href, 'audit.csv')) }, 'Export CSV');
  const verifyButton = h('button', { type: 'button', onclick: () => verify() }, 'Verify the chain');

  main.append(
    h('h1', {}, 'Audit log'),
    h(
      'section.card',
      { 'aria-labelledby': 'h-chain' },
      h('h2', { id: 'h-chain' }, 'The chain'),
      h('p.muted', {}, 'Each entry is linked to the one before under the audit key; verifying finds the first entry changed, inserted, removed or recomputed, and a cut-off tail against the anchors.'),
      verifyButton,
      verifyOut,
    ),
    h(
      'section.card',
      { 'aria-labelledby': 'h-entries' },
      h('h2', { id: 'h-entries' }, 'Entries, newest first'),
      h(
        'form.inline-form',
        {
          'aria-label': 'Filter the audit log',
          onsubmit: (e) => {
            e.preventDefault();
            ctx.navigate(`/audit${qs({ actor: actor.value.trim(), action: action.value.trim(), from: localToIso(from.value), to: localToIso(to.value) })}`);
          },
        },
        field('Actor (client id)', actor),
        field('Action', action, 'exact, or a prefix ending in a dot'),
        field('From', from),
        field('To', to),
        h('button', { type: 'submit' }, 'Filter'),
        h('button', { type: 'button', onclick: () => ctx.navigate('/audit') }, 'Clear filters'),
      ),
      h('p', {}, exportLink, ' ', h('span.muted', {}, 'every entry these filters match, with its chain link')),
      list,
    ),
  );

  async function verify() {
    verifyButton.disabled = true;
    fill(verifyOut, h('p.muted', {}, 'Verifying…'));
    try {
      const v = await api('/v1/audit/verify');
      fill(verifyOut, h(v.ok ? 'p.ok-text' : 'div.error', { role: v.ok ? 'status' : 'alert' }, verifyWords(v)));
    } catch (err) {
      fill(verifyOut, errorBox(err));
    } finally {
      verifyButton.disabled = false;
    }
  }

  try {
    const { items } = await api(`/v1/audit${qs({ ...filters, order: 'desc', beforeSeq: before, limit: PAGE })}`);
    const last = items.at(-1);
    fill(
      list,
      table(
        `${items.length} entr${items.length === 1 ? 'y' : 'ies'}${before ? ` before entry ${before}` : ''}`,
        [
          { label: 'Entry', cell: (e) => String(e.seq), class: 'num' },
          { label: 'When', cell: (e) => fmtTime(e.at) },
          { label: 'Actor', cell: (e) => e.actor },
          { label: 'Action', cell: (e) => e.action },
          { label: 'Target', cell: (e) => e.target },
          { label: 'Details', cell: (e) => h('span.details', {}, detailsText(e.details)) },
        ],
        items,
        { class: 'audit', stack: true, empty: 'No entries match.', rowData: (e) => ({ seq: e.seq }) },
      ),
      h(
        'nav.pager',
        { 'aria-label': 'Audit pages' },
        before ? h('a', { href: `#/audit${qs(filters)}` }, 'Newest') : null,
        items.length === PAGE && last ? h('a', { href: `#/audit${qs({ ...filters, before: last.seq })}` }, 'Next page (older)') : null,
      ),
    );
  } catch (err) {
    fill(list, errorBox(err));
  }
}
