// Small DOM helpers. Text from the API is always set as text (never as HTML), so a meter id or a note cannot inject markup.

/** h('tag.class', {attr: value, onclick: fn}, ...children): an element. Children may be strings, nodes, arrays, null. */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = [el.className, v].filter(Boolean).join(' ');
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replace an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const pad = (n) => String(n).padStart(2, '0');

/** The zone of a local time as the console names it: "UTC", "UTC+1", "UTC-3:30" (from the offset at that instant). */
export function zoneName(d) {
  const east = -d.getTimezoneOffset();
  if (east === 0) return 'UTC';
  const a = Math.abs(east);
  return `UTC${east > 0 ? '+' : '-'}${Math.floor(a / 60)}${a % 60 ? `:${pad(a % 60)}` : ''}`;
}

/**
 * Every time on every console page: "2026-11-24 09:05:03 UTC+1", in the browser's time zone and naming it, so a
 * time never reads as another zone's. '—' for none; a string that is not a time is shown as it is.
 */
export function fmtTime(iso) {
  if (iso === null || iso === undefined || iso === '') return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneName(d)}`;
}

/** A sentence from the API with ISO times in it (a timeline summary, a reason) with each time as fmtTime shows it. */
export function timesIn(text) {
  if (typeof text !== 'string') return text;
  return text.replace(/\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})\b/g, (iso) => fmtTime(iso));
}

/** "3 h 20 min", "45 min", "overdue 12 min". */
export function fmtMinutes(minutes) {
  if (minutes === null || minutes === undefined) return '—';
  const m = Math.round(Math.abs(minutes));
  const text = m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min`;
  return minutes < 0 ? `overdue ${text}` : text;
}

/** "12 s", "4 min 10 s", "1 h 5 min". */
export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export const pct = (x) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(1)}%`);

/** Say something to screen-reader users without moving focus. */
export function announce(text) {
  const el = document.getElementById('announce');
  if (el) el.textContent = text;
}

/** A labelled form field: <div class="field"><label for=id>…</label><input id=id …></div>. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h('span.hint', { id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div.field', {}, h('label', { for: id }, label), control, hintEl);
}

export function select(name, options, value) {
  return h(
    'select',
    { name },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, text);
    }),
  );
}

/** A state word as a badge; the word is always shown, colour only adds to it. */
export function badge(word, kind = word) {
  return h('span.badge', { class: `b-${String(kind).replaceAll('_', '-')}` }, String(word).replaceAll('_', ' '));
}

/** An error box for an API error: code and message, as the user must see them. */
export function errorBox(err) {
  return h('div.error', { role: 'alert' }, h('strong', {}, err.code ?? 'Error'), ': ', err.message ?? String(err));
}

/**
 * A simple table; columns: [{label, cell: (row) => node|string, class?}]. `options.stack`: on a narrow screen each row
 * becomes a block of "label: value" lines (style.css `table.stack`), so the page never scrolls sideways.
 */
export function table(caption, columns, rows, options = {}) {
  return h(
    'table',
    { class: [options.class, options.stack ? 'stack' : ''].filter(Boolean).join(' ') || undefined },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    h(
      'tbody',
      {},
      rows.length === 0
        ? h('tr', {}, h('td.empty', { colspan: columns.length }, options.empty ?? 'Nothing to show.'))
        : rows.map((r) => h('tr', { class: options.rowClass?.(r), dataset: options.rowData?.(r) }, columns.map((c) => (options.stack ? h('td', { class: c.class, 'data-label': c.label }, h('div', {}, c.cell(r))) : h('td', { class: c.class }, c.cell(r)))))),
    ),
  );
}

export function newIdempotencyKey(prefix) {
  return `console-${prefix}-${crypto.randomUUID()}`;
}

/** What an order asks, in words: the relay action, or a demand limit in watts, or a limit's removal (rule 10). */
export function orderWhat(o) {
  if (o.action !== 'limit') return o.action;
  return o.limitW === null || o.limitW === undefined ? 'remove limit' : `limit ${o.limitW} W`;
}

/**
 * Run a user's action and say how it went in `box`: the sentence `work` returns as a status (also announced to
 * screen-reader users), or the API error with its code.
 */
export async function showOutcome(box, work) {
  try {
    const words = await work();
    fill(box, h('p', { role: 'status' }, words));
    announce(words);
  } catch (err) {
    fill(box, errorBox(err));
  }
}
