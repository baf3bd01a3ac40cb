// Orders over time (GET /v1/stats/series): finished orders per minute, success rate and queue depth, hand-drawn in SVG
// like charts.js, with a time-range picker. Each chart has an aria-label that sums it up and its figures as a table.

import { api, qs } from './api.js';
import { errorBox, fill, h, pct } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const REFRESH_MS = 30_000;

/** The ranges offered, with a bucket width that gives 60 to 168 points. */
export const RANGES = [
  { id: '1h', label: 'Last 1 h', ms: 3_600_000, stepSeconds: 60 },
  { id: '6h', label: 'Last 6 h', ms: 6 * 3_600_000, stepSeconds: 300 },
  { id: '24h', label: 'Last 24 h', ms: 24 * 3_600_000, stepSeconds: 900 },
  { id: '7d', label: 'Last 7 d', ms: 7 * 24 * 3_600_000, stepSeconds: 3600 },
];

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

const pad = (n) => String(n).padStart(2, '0');
/** An axis time in the browser's zone: "14:05", or "Nov 28 14:00" when the range spans days. */
function axisTime(iso, withDay) {
  const d = new Date(iso);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withDay ? `${d.toLocaleString('en', { month: 'short' })} ${d.getDate()} ${hm}` : hm;
}

/** The zone the times are shown in, named once per card ("times in Europe/Berlin"). */
const zoneName = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';

/**
 * One line or bar chart over the buckets. `points`: [{at, value (number or null)}]; `format` writes a value.
 * Scales to its container's width (viewBox); a gap in a line where the value is null (nothing finished).
 */
function timeChart(title, points, { kind = 'line', format = String, max = null, summary }) {
  const width = 420;
  const height = 190;
  const left = 46;
  const right = 12;
  const top = 14;
  const bottom = 30;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const values = points.map((p) => p.value).filter((v) => v !== null);
  // An even top, so the middle grid line is a whole number too.
  const top1 = max ?? Math.max(2, Math.ceil(Math.max(0, ...values) / 2) * 2);
  const withDay = points.length > 1 && Date.parse(points.at(-1).at) - Date.parse(points[0].at) >= 24 * 3_600_000;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', 'aria-label': `${title}: ${summary}`, class: 'chart series' });
  svg.append(s('title', {}, title));
  const x = (i) => left + (points.length <= 1 ? plotW / 2 : (i / (points.length - 1)) * plotW);
  const y = (v) => top + plotH - (v / top1) * plotH;
  // Horizontal grid at 0, half and the top, labelled.
  for (const g of [0, 0.5, 1]) {
    svg.append(s('line', { x1: left, x2: left + plotW, y1: y(g * top1), y2: y(g * top1), class: 'grid' }));
    svg.append(s('text', { x: left - 6, y: y(g * top1) + 4, 'text-anchor': 'end', class: 'axis' }, format(g * top1)));
  }
  // Time labels: first, middle, last.
  const ticks = points.length === 0 ? [] : [...new Set([0, Math.floor((points.length - 1) / 2), points.length - 1])];
  for (const i of ticks) svg.append(s('text', { x: x(i), y: height - 8, 'text-anchor': i === 0 ? 'start' : i === points.length - 1 ? 'end' : 'middle', class: 'axis' }, axisTime(points[i].at, withDay)));
  if (values.length === 0) svg.append(s('text', { x: left + 8, y: top + plotH / 2, class: 'axis' }, 'nothing in this range'));
  if (kind === 'bars') {
    const w = Math.max(1, plotW / Math.max(1, points.length) - 1);
    points.forEach((p, i) => {
      if (!p.value) return;
      const bar = s('rect', { x: left + (i / Math.max(1, points.length)) * plotW, y: y(p.value), width: w, height: top + plotH - y(p.value), class: 'bar' });
      bar.append(s('title', {}, `${axisTime(p.at, withDay)}: ${format(p.value)}`));
      svg.append(bar);
    });
  } else {
    let d = '';
    let pen = false;
    points.forEach((p, i) => {
      if (p.value === null) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)} ${y(p.value).toFixed(1)} `;
      pen = true;
    });
    if (d) svg.append(s('path', { d: d.trim(), class: 'series-line' }));
    // A dot on each point, so a lone point between gaps is seen too.
    points.forEach((p, i) => {
      if (p.value === null) return;
      const dot = s('circle', { cx: x(i).toFixed(1), cy: y(p.value).toFixed(1), r: 2.5, class: 'series-dot' });
      dot.append(s('title', {}, `${axisTime(p.at, withDay)}: ${format(p.value)}`));
      svg.append(dot);
    });
  }
  return svg;
}

const describeRange = (values, format) => {
  const known = values.filter((v) => v !== null);
  if (known.length === 0) return 'no data in this range';
  return `lowest ${format(Math.min(...known))}, highest ${format(Math.max(...known))}, latest ${format(known.at(-1))}`;
};

/**
 * The card: a range picker (last 1 h, 6 h, 24 h, 7 d) and three charts with their tables. Fetches on creation,
 * when the range changes and every 30 s; stops refreshing once the card has left the page.
 */
export function seriesCard() {
  let range = RANGES[0];
  const body = h('div.series-body', { 'aria-live': 'polite' }, h('p.muted', {}, 'Loading orders over time…'));
  const picker = h(
    'fieldset.series-range',
    {},
    h('legend', {}, 'Time range'),
    RANGES.map((r) =>
      h('label.check', {}, h('input', { type: 'radio', name: 'series-range', value: r.id, checked: r === range, onchange: () => { range = r; void load(); } }), ` ${r.label}`),
    ),
  );
  const card = h('section.card.wide', { 'aria-labelledby': 'h-series', id: 'series-card' }, h('h2', { id: 'h-series' }, 'Orders over time'), picker, body);

  let seq = 0;
  const load = async () => {
    const mine = ++seq;
    const to = new Date();
    const from = new Date(to.getTime() - range.ms);
    try {
      const data = await api(`/v1/stats/series${qs({ from: from.toISOString(), to: to.toISOString(), stepSeconds: range.stepSeconds })}`);
      if (mine === seq) draw(data);
    } catch (err) {
      if (mine === seq) fill(body, errorBox(err));
    }
  };

  const draw = (data) => {
    const b = data.buckets;
    const perMinute = (n) => n / (data.stepSeconds / 60);
    const fmtRate = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
    const finished = b.map((x) => ({ at: x.at, value: perMinute(x.finished) }));
    const success = b.map((x) => ({ at: x.at, value: x.successRate }));
    const depth = b.map((x) => ({ at: x.at, value: x.queueDepth }));
    const bucketWords = data.stepSeconds >= 3600 ? `${data.stepSeconds / 3600} h` : `${data.stepSeconds / 60} min`;
    const total = b.reduce((n, x) => n + x.finished, 0);
    const done = b.reduce((n, x) => n + x.done, 0);
    fill(
      body,
      h('p.muted', {}, `${range.label}: ${total} orders finished, ${done} done remotely${total ? ` (${pct(done / total)})` : ''}. One point per ${bucketWords}; times in ${zoneName()}. Refreshed every 30 s.`),
      h('div.series-charts', {},
        h('figure', {}, h('figcaption', {}, 'Finished orders per minute'), timeChart('Finished orders per minute', finished, { kind: 'bars', format: fmtRate, summary: describeRange(finished.map((p) => p.value), fmtRate) })),
        h('figure', {}, h('figcaption', {}, 'Success rate (done remotely ÷ finished)'), timeChart('Success rate', success, { format: (v) => `${Math.round(v * 100)}%`, max: 1, summary: describeRange(success.map((p) => p.value), pct) })),
        h('figure', {}, h('figcaption', {}, 'Queue depth (open orders)'), timeChart('Queue depth', depth, { format: (v) => String(Math.round(v)), summary: describeRange(depth.map((p) => p.value), String) })),
      ),
      h(
        'details.series-table',
        {},
        h('summary', {}, 'The figures as a table'),
        h(
          'table',
          { class: 'compact stack' },
          h('caption', {}, `Orders over time, per ${bucketWords} (times in ${zoneName()})`),
          h('thead', {}, h('tr', {}, ['From', 'Finished', 'Done', 'Failed or escalated', 'Success rate', 'Queue depth'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            b.map((x) =>
              h('tr', {}, [
                ['From', axisTime(x.at, true)],
                ['Finished', String(x.finished)],
                ['Done', String(x.done)],
                ['Failed or escalated', String(x.failedOrEscalated)],
                ['Success rate', x.successRate === null ? '—' : pct(x.successRate)],
                ['Queue depth', String(x.queueDepth)],
              ].map(([label, v]) => h('td', { 'data-label': label }, h('div', {}, v)))),
            ),
          ),
        ),
      ),
    );
  };

  void load();
  const timer = setInterval(() => {
    // The card is built once per visit of the overview: once it has left the page it stops asking.
    if (!card.isConnected) {
      clearInterval(timer);
      return;
    }
    void load();
  }, REFRESH_MS);
  return card;
}
