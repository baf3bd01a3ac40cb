// Links (GET /v1/links): every broker connection, RS-485 bus, Modbus TCP gateway and DLMS port or link, down ones first.
import { api } from '../api.js';
import { errorBox, fill, fmtTime, h } from '../dom.js';
import { downFirst, linksDownNotice, linksTable } from '../links-table.js';

export async function render(main) {
  const box = h('div', { 'aria-live': 'polite' });
  main.append(
    h('h1', {}, 'Links'),
    h('p.muted', {}, 'Each link the gateway talks to meters over: up or down since when, its last error and its counters since the gateway started. Down links come first; their meters’ orders wait without spending attempts.'),
    h('section.card', { 'aria-label': 'Links' }, box),
  );
  const load = async () => {
    try {
      const { items } = await api('/v1/links');
      fill(box, linksDownNotice(items), linksTable(downFirst(items), { caption: `${items.length} link(s), down first` }), h('p.muted', {}, `Updated ${fmtTime(new Date().toISOString())}.`));
    } catch (err) {
      fill(box, errorBox(err));
    }
  };
  await load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
