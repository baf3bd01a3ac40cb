// Hand-drawn SVG charts (no chart library): horizontal bars from 0 to 100% with the alert threshold as a line.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * bars: [{label, rate (0..1), ok, total, alerting}]; threshold: 0..1.
 * Bars below the threshold are drawn in the warning colour and marked with "below" in their text,
 * so the colour is never the only signal.
 */
export function rateBars(title, bars, threshold) {
  const rowH = 26;
  const labelW = 230;
  const plotW = 360;
  const valueW = 150;
  const top = 22;
  const width = labelW + plotW + valueW;
  const height = top + Math.max(1, bars.length) * rowH + 24;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', 'aria-label': `${title}; alert threshold ${(threshold * 100).toFixed(0)}%`, class: 'chart' });
  svg.append(s('title', {}, title));
  // Grid at 0, 50, 100 % and the threshold.
  for (const g of [0, 0.5, 1]) {
    const x = labelW + g * plotW;
    svg.append(s('line', { x1: x, x2: x, y1: top - 4, y2: height - 20, class: 'grid' }));
    svg.append(s('text', { x, y: 12, 'text-anchor': 'middle', class: 'axis' }, `${g * 100}%`));
  }
  if (bars.length === 0) {
    svg.append(s('text', { x: labelW, y: top + 16, class: 'axis' }, 'no switching in this window yet'));
  }
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const below = b.rate < threshold;
    svg.append(s('text', { x: labelW - 8, y: y + 16, 'text-anchor': 'end', class: 'label' }, b.label));
    svg.append(s('rect', { x: labelW, y: y + 4, width: plotW, height: rowH - 8, class: 'track' }));
    const bar = s('rect', { x: labelW, y: y + 4, width: Math.max(1, b.rate * plotW), height: rowH - 8, class: below ? 'bar below' : 'bar' });
    bar.append(s('title', {}, `${b.label}: ${(b.rate * 100).toFixed(1)}% (${b.ok} of ${b.total})`));
    svg.append(bar);
    svg.append(s('text', { x: labelW + plotW + 8, y: y + 16, class: below ? 'value below' : 'value' }, `${(b.rate * 100).toFixed(1)}% of ${b.total}${below ? ' · below' : ''}`));
  });
  const tx = labelW + threshold * plotW;
  svg.append(s('line', { x1: tx, x2: tx, y1: top - 6, y2: height - 16, class: 'threshold' }));
  svg.append(s('text', { x: tx, y: height - 3, 'text-anchor': 'middle', class: 'threshold-label' }, `alert below ${(threshold * 100).toFixed(0)}%`));
  return svg;
}

/** A stacked horizontal bar of counts (orders by state, meters by relay), with a legend in text. */
export function stackedBar(title, parts) {
  const total = parts.reduce((a, p) => a + p.value, 0);
  const width = 600;
  const svg = s('svg', { viewBox: `0 0 ${width} 28`, width: '100%', role: 'img', 'aria-label': `${title}: ${parts.map((p) => `${p.label} ${p.value}`).join(', ')}`, class: 'chart stacked' });
  let x = 0;
  for (const p of parts) {
    if (p.value === 0 || total === 0) continue;
    const w = (p.value / total) * width;
    const r = s('rect', { x, y: 2, width: w, height: 24, class: `seg ${p.kind}` });
    r.append(s('title', {}, `${p.label}: ${p.value}`));
    svg.append(r);
    x += w;
  }
  if (total === 0) svg.append(s('rect', { x: 0, y: 2, width, height: 24, class: 'track' }));
  return svg;
}
