// Circuit breakers (GET /v1/stats/breakers): an open breaker holds new disconnects for its population (a firmware
// profile, link or region) because their success fell too low. Reset (breaker:reset) once the cause is fixed.
import { api, qs, session } from '../api.js';
import { badge, errorBox, fill, fmtDuration, fmtTime, h, newIdempotencyKey, table, showOutcome } from '../dom.js';

const SCOPE_WORDS = { profile: 'firmware profile', link: 'link', region: 'region' };

export async function render(main, ctx) {
  const all = ctx.query.get('all') === 'true';
  const list = h('div');
  const result = h('div', { id: 'breaker-result', 'aria-live': 'polite' });
  const mayReset = session.can('breaker:reset');
  main.append(
    h('h1', {}, 'Circuit breakers'),
    h(
      'section.card',
      { 'aria-labelledby': 'h-breakers' },
      h('h2', { id: 'h-breakers' }, all ? 'Every breaker, open and reset' : 'Open breakers'),
      h('p.muted', {}, 'A breaker opens when remote disconnects for a population keep failing; while it is open, new disconnects there are held (reconnects go on). Reset it once the cause is fixed; the held disconnects then resume by themselves.'),
      h('p', {}, all ? h('a', { href: '#/breakers' }, 'Show open breakers only') : h('a', { href: '#/breakers?all=true' }, 'Show reset breakers too')),
      result,
      list,
    ),
  );

  const reset = async (b) => {
    const who = `${SCOPE_WORDS[b.scope] ?? b.scope} ${b.key}`;
    if (!window.confirm(`Reset the ${b.action} breaker for ${who}? Held disconnects for ${who} resume at once. Reset only once the cause is fixed.`)) return;
    await showOutcome(result, async () => {
      const done = await api(`/v1/stats/breakers/${encodeURIComponent(b.id)}/reset`, { method: 'POST', idempotencyKey: newIdempotencyKey('breaker-reset') });
      return `Breaker for ${who} reset by ${done.resetBy}; held disconnects resume.`;
    });
    await load();
  };

  const load = async () => {
    try {
      const { items } = await api(`/v1/stats/breakers${qs({ open: all ? 'false' : 'true' })}`);
      fill(
        list,
        table(
          `${items.length} ${all ? '' : 'open '}breaker(s)`,
          [
            { label: 'State', cell: (b) => (b.resetAt ? badge('reset', 'closed') : badge('open', 'down')) },
            { label: 'Holds', cell: (b) => `${b.action}s of ${SCOPE_WORDS[b.scope] ?? b.scope} ${b.key}` },
            { label: 'Why it opened', cell: (b) => b.reason },
            { label: 'Since', cell: (b) => [fmtTime(b.openedAt), b.resetAt ? null : h('div.muted', {}, `open for ${fmtDuration((Date.now() - Date.parse(b.openedAt)) / 1000)}`)] },
            { label: 'Reset', cell: (b) => (b.resetAt ? `by ${b.resetBy}, ${fmtTime(b.resetAt)}` : mayReset ? h('button.danger', { type: 'button', 'aria-label': `Reset breaker for ${SCOPE_WORDS[b.scope] ?? b.scope} ${b.key}`, onclick: () => reset(b) }, 'Reset') : h('span.muted', {}, 'not yet')) },
          ],
          items,
          { class: 'breakers', stack: true, empty: all ? 'No breaker has opened.' : 'No breaker is open: disconnects go ahead everywhere.', rowData: (b) => ({ breaker: b.id }) },
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
