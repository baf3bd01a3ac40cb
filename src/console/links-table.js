// The links table (GET /v1/links), shared by the overview (compact: state and last error) and the Links page (every
// column, down links first). Link names, ports and error messages wrap (table.links), so no page scrolls sideways.
import { badge, fmtTime, h, table } from './dom.js';

const COUNTER_WORDS = [
  ['crcErrors', 'CRC errors'],
  ['garbled', 'garbled'],
  ['frameRetries', 'frame retries'],
  ['timeouts', 'timeouts'],
  ['unknownCorrelationIds', 'unknown correlation ids'],
  ['reopens', 'reopens'],
  ['reconnects', 'reconnects'],
];

/** The counters that are not zero, in words; exceptions by code. */
export function linkCounters(c) {
  const items = [
    ...COUNTER_WORDS.filter(([k]) => c[k] > 0).map(([k, words]) => `${words} ${c[k]}`),
    ...Object.entries(c.exceptions ?? {}).filter(([, n]) => n > 0).map(([code, n]) => `exception ${code} ${n}`),
  ];
  return items.length === 0 ? h('span.muted', {}, 'all zero') : h('ul.counters', {}, items.map((t) => h('li', {}, t)));
}

/** "2 link(s) down: …" as a status line, or null when every link is up. */
export function linksDownNotice(items) {
  const down = items.filter((l) => l.state === 'down').length;
  return down > 0 ? h('div.warning', { role: 'status' }, `${down} link(s) down: their meters' orders wait without spending attempts.`) : null;
}

/** Down links first, then by name. */
export const downFirst = (items) => items.slice().sort((a, b) => (a.state === 'down' ? 0 : 1) - (b.state === 'down' ? 0 : 1) || a.link.localeCompare(b.link));

/**
 * The links as a table. `compact`: link, state and last error (the overview); otherwise also the counters (the Links
 * page). Stacked into labelled blocks at phone width.
 */
export function linksTable(items, { caption = 'Links: state, last error and counters since the gateway started', compact = false } = {}) {
  const columns = [
    { label: 'Link', cell: (l) => [h('strong', {}, l.link), h('div.muted', {}, l.kind)] },
    { label: 'State', cell: (l) => [badge(l.state), h('div.muted', {}, `since ${fmtTime(l.since)}`)] },
    { label: 'Last error', cell: (l) => (l.lastError ? [h('div.muted', {}, fmtTime(l.lastError.at)), l.lastError.message] : '—') },
    ...(compact ? [] : [{ label: 'Counters', cell: (l) => linkCounters(l.counters) }]),
  ];
  return table(caption, columns, items, { class: 'compact links', stack: true, empty: 'No links yet (the drivers are starting).', rowData: (l) => ({ link: l.link }) });
}
