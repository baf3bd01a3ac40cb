import { api } from '../api.js';
import { rateBars, stackedBar } from '../charts.js';
import { errorBox, fill, fmtTime, h, select, table, badge } from '../dom.js';
import { onOrders, onStats } from '../live.js';
import { linksDownNotice, linksTable as linksTableOf } from '../links-table.js';
import { seriesCard } from '../series-charts.js';

const OPEN_STATES = ['accepted', 'held', 'queued', 'in_flight', 'escalated'];
const STATE_ORDER = ['accepted', 'held', 'queued', 'in_flight', 'escalated', 'done', 'armed', 'done_by_field', 'failed', 'cancelled', 'superseded', 'refused'];
const DEFAULT_THRESHOLD = 0.95;

export async function render(main) {
  const fleetBox = h('section.card', { 'aria-labelledby': 'h-fleet' });
  const queueBox = h('section.card', { 'aria-labelledby': 'h-queue' });
  const ratesBox = h('section.card.wide', { 'aria-labelledby': 'h-rates' });
  const linksBox = h('section.card.wide', { 'aria-labelledby': 'h-links' });
  main.append(h('h1', {}, 'Overview'), h('div.grid', {}, fleetBox, queueBox, linksBox, ratesBox));
  queueBox.after(seriesCard());

  // ---- fleet: counts only; the per-meter list is the Meters page (at fleet scale it is thousands of rows) ----
  const fleetSummary = h('div');
  fleetBox.append(h('h2', { id: 'h-fleet' }, 'Meters by relay state'), fleetSummary);
  const loadFleet = async () => {
    try {
      const fleet = await api('/v1/fleet');
      const b = fleet.byRelay;
      fill(
        fleetSummary,
        h('p.big', {}, `${fleet.total} meters`),
        stackedBar('Meters by relay state', [
          { label: 'connected', value: b.connected, kind: 'connected' },
          { label: 'disconnected', value: b.disconnected, kind: 'disconnected' },
          { label: 'armed', value: b.armed, kind: 'armed' },
          { label: 'not known', value: b.unknown, kind: 'unknown' },
        ]),
        h(
          'ul.legend',
          { 'aria-label': 'Meters by relay state' },
          h('li', {}, badge('connected'), ` ${b.connected}`),
          h('li', {}, badge('disconnected'), ` ${b.disconnected}`),
          h('li', {}, badge('armed'), ` ${b.armed}`),
          h('li', {}, badge('not known', 'unknown'), ` ${b.unknown}`),
        ),
        h('p', {}, h('a', { href: '#/meters' }, 'List and search the meters'), h('span.muted', {}, ' (relay "not known": never read, or the last reading did not say)')),
      );
    } catch (err) {
      fill(fleetSummary, errorBox(err));
    }
  };

  // ---- queue and throughput (live) ----
  const drawStats = (s) => {
    const q = s.queue ?? {};
    const depth = OPEN_STATES.reduce((a, k) => a + (q[k] ?? 0), 0);
    const links = Object.entries(s.inFlightByLink ?? {});
    fill(
      queueBox,
      h('h2', { id: 'h-queue' }, 'Queue'),
      h(
        'dl.kpis',
        {},
        h('div', {}, h('dt', {}, 'Queue depth (open orders)'), h('dd', { id: 'queue-depth' }, String(depth))),
        h('div', {}, h('dt', {}, 'Finished, last minute'), h('dd', {}, String(s.finished.last1m))),
        h('div', {}, h('dt', {}, 'Throughput, last 5 min'), h('dd', {}, `${(s.finished.last5m / 5).toFixed(1)} / min`)),
        h('div', {}, h('dt', {}, 'On the wire'), h('dd', {}, String(links.reduce((a, [, n]) => a + n, 0)))),
      ),
      stackedBar(
        'Orders by state',
        STATE_ORDER.map((k) => ({ label: k, value: q[k] ?? 0, kind: k })),
      ),
      table(
        'Orders by state',
        [
          { label: 'State', cell: (r) => badge(r[0]) },
          { label: 'Orders', cell: (r) => String(r[1]), class: 'num' },
        ],
        STATE_ORDER.filter((k) => q[k]).map((k) => [k, q[k]]),
        { class: 'compact', empty: 'No orders yet.' },
      ),
      h('p.muted', {}, `Live; updated ${fmtTime(s.at)}. Throughput counted since ${fmtTime(s.countingSince)}.`),
    );
  };
  fill(queueBox, h('h2', { id: 'h-queue' }, 'Queue'), h('p.muted', {}, 'Waiting for live statistics…'));
  try {
    const q = await api('/v1/queue');
    drawStats({ queue: q.byState, inFlightByLink: q.inFlightByLink, finished: { last1m: 0, last5m: 0 }, at: new Date().toISOString(), countingSince: new Date().toISOString() });
  } catch (err) {
    fill(queueBox, h('h2', { id: 'h-queue' }, 'Queue'), errorBox(err));
  }

  // ---- links (GET /v1/links) ----
  const linksTable = h('div');
  linksBox.append(h('h2', { id: 'h-links' }, 'Links'), linksTable);
  const loadLinks = async () => {
    try {
      const { items } = await api('/v1/links');
      fill(linksTable, linksDownNotice(items), linksTableOf(items, { caption: 'Links: state and last error', compact: true }), h('p', {}, h('a', { href: '#/links' }, 'Every link with its counters')));
    } catch (err) {
      fill(linksTable, errorBox(err));
    }
  };

  // ---- success rates ----
  let kind = 'final';
  let windowMinutes = null;
  let report = null;
  const charts = h('div');
  const drawRates = () => {
    if (!report) return;
    const threshold = typeof report.alertBelow === 'number' ? report.alertBelow : DEFAULT_THRESHOLD;
    const windows = [...new Set(report.rates.map((r) => r.windowMinutes))].sort((a, b) => a - b);
    if (windowMinutes === null || !windows.includes(windowMinutes)) windowMinutes = windows[0] ?? null;
    const pick = (scope) =>
      report.rates
        .filter((r) => r.scope === scope && r.kind === kind && r.windowMinutes === windowMinutes)
        .sort((a, b) => a.key.localeCompare(b.key) || a.action.localeCompare(b.action))
        .map((r) => ({ label: `${r.key} · ${r.action}`, rate: r.rate, ok: r.ok, total: r.total }));
    fill(
      charts,
      h('div.controls', {},
        h('div.field.inline', {}, h('label', { for: 'rate-kind' }, 'Measure'), Object.assign(select('kind', [['final', 'orders done remotely'], ['first_attempt', 'done at the first attempt'], ['attempt', 'per attempt']], kind), { id: 'rate-kind', onchange: (e) => { kind = e.target.value; drawRates(); } })),
        windows.length > 0
          ? h('div.field.inline', {}, h('label', { for: 'rate-window' }, 'Window'), Object.assign(select('window', windows.map((w) => [String(w), `${w} min`]), String(windowMinutes)), { id: 'rate-window', onchange: (e) => { windowMinutes = Number(e.target.value); drawRates(); } }))
          : null,
      ),
      h('h3', {}, 'Per firmware profile'),
      rateBars('Success rate per firmware profile', pick('profile'), threshold),
      h('h3', {}, 'Per region'),
      rateBars('Success rate per region', pick('region'), threshold),
      report.alerting.length > 0
        ? h('div.warning', { role: 'status' }, `${report.alerting.length} rate(s) below the alert threshold: `, report.alerting.map((r) => `${r.scope} ${r.key} ${r.action} (${(r.rate * 100).toFixed(1)}%, ${r.windowMinutes} min)`).join('; '))
        : h('p.muted', {}, 'No rate is below the alert threshold.'),
      h('p.muted', {}, `Evaluated ${fmtTime(report.at)}. Alert threshold ${(threshold * 100).toFixed(0)}%${typeof report.alertBelow === 'number' ? '' : ' (the default; this gateway does not report its configured value)'}; rates over fewer orders than the configured minimum do not alert.`),
    );
  };
  const loadRates = async () => {
    try {
      report = await api('/v1/stats/success-rates');
      drawRates();
    } catch (err) {
      fill(charts, errorBox(err));
    }
  };
  ratesBox.append(h('h2', { id: 'h-rates' }, 'Success rates'), charts);

  await Promise.all([loadFleet(), loadRates(), loadLinks()]);
  const offStats = onStats(drawStats);
  // Meter states change when orders finish; refresh the fleet at most every 2 s while orders move.
  let fleetTimer = null;
  const offOrders = onOrders(() => {
    if (fleetTimer) return;
    fleetTimer = setTimeout(() => {
      fleetTimer = null;
      void loadFleet();
    }, 2000);
  });
  const ratesTimer = setInterval(loadRates, 10000);
  const linksTimer = setInterval(loadLinks, 5000);
  return () => {
    offStats();
    offOrders();
    clearInterval(ratesTimer);
    clearInterval(linksTimer);
    if (fleetTimer) clearTimeout(fleetTimer);
  };
}
