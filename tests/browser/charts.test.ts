import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium } from '../harness/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * The overview's charts of orders over time, in a real browser (Debian's chromium) against a real gateway: finished
 * orders per minute, success rate and queue depth drawn from GET /v1/stats/series, a range picker that asks again
 * for the chosen range, and at phone width charts that fit the screen.
 */
const CLOSES = 'acme-em340-fw2.4';
const METERS = ['CH-1', 'CH-2', 'CH-3', 'CH-4'];
let f: GatewayFixture;
let browser: Browser;
const contexts: BrowserContext[] = [];

async function signIn(apiKey: string, viewport: { width: number; height: number }): Promise<{ page: Page; seriesRequests: URL[] }> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  const seriesRequests: URL[] = [];
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.pathname === '/v1/stats/series') seriesRequests.push(url);
  });
  await page.goto(`${f.gateway.apiUrl}/`);
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  return { page, seriesRequests };
}

const card = (page: Page) => page.locator('#series-card');

beforeAll(async () => {
  f = await startGatewayFixture(METERS.map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'disconnected' as const })));
  browser = await launchChromium();
  // Four reconnects run to the end, so the last hour has finished orders to draw.
  let n = 0;
  for (const meterId of METERS) {
    const res = await f.http('POST', `/v1/meters/${meterId}/reconnect`, { key: f.billingKey, headers: { 'idempotency-key': `ch-${++n}` }, body: { reason: 'payment', paymentReceivedAt: new Date().toISOString() } });
    expect(res.status).toBe(202);
    await f.waitForOrder(res.body.id);
  }
}, 120_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await f?.stop();
});

describe('orders over time on the overview', () => {
  it('at desk width: three charts with data, each summed up in its label and given as a table', async () => {
    const { page, seriesRequests } = await signIn(f.operatorKey, { width: 1366, height: 860 });
    await card(page).getByRole('heading', { name: 'Orders over time' }).waitFor();
    await card(page).getByText('4 orders finished, 4 done remotely (100.0%)').waitFor({ timeout: 20_000 });
    const charts = card(page).getByRole('img');
    await expect.poll(() => charts.count()).toBe(3);
    const labels = await charts.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')));
    expect(labels[0]).toMatch(/^Finished orders per minute: lowest 0, highest [1-4], latest /);
    expect(labels[1]).toMatch(/^Success rate: lowest 100\.0%, highest 100\.0%, latest 100\.0%$/);
    expect(labels[2]).toMatch(/^Queue depth: lowest 0, highest \d+, latest 0$/);
    // The finished orders are drawn: at least one bar.
    expect(await card(page).locator('svg').first().locator('rect.bar').count()).toBeGreaterThan(0);
    // The table behind the charts: one row per minute of the last hour, and the four finished orders in it.
    await card(page).getByText('The figures as a table').click();
    const rows = card(page).locator('details table tbody tr');
    await expect.poll(() => rows.count()).toBe(60);
    const finished = await rows.evaluateAll((trs) => trs.reduce((n, tr) => n + Number(tr.children[1]!.textContent), 0));
    expect(finished).toBe(4);
    expect(seriesRequests.length).toBeGreaterThanOrEqual(1);
    expect(seriesRequests[0]!.searchParams.get('stepSeconds')).toBe('60');
  });

  it('choosing another range asks the API for that range and redraws', async () => {
    const { page, seriesRequests } = await signIn(f.operatorKey, { width: 1366, height: 860 });
    await card(page).getByText(/^Last 1 h: 4 orders finished/).waitFor({ timeout: 20_000 });
    for (const [label, hours, step] of [['Last 24 h', 24, '900'], ['Last 7 d', 168, '3600'], ['Last 6 h', 6, '300']] as const) {
      const before = seriesRequests.length;
      await card(page).getByLabel(label).check();
      await expect.poll(() => seriesRequests.length).toBeGreaterThan(before);
      const asked = seriesRequests.at(-1)!;
      expect(asked.searchParams.get('stepSeconds')).toBe(step);
      expect(Date.parse(asked.searchParams.get('to')!) - Date.parse(asked.searchParams.get('from')!)).toBe(hours * 3_600_000);
      await card(page).getByText(new RegExp(`^${label}: 4 orders finished`)).waitFor({ timeout: 20_000 });
    }
    await card(page).getByText('The figures as a table').click();
    await expect.poll(() => card(page).locator('details table tbody tr').count()).toBe(72);
  });

  it('at 390 px the charts fit the screen and the page never scrolls sideways', async () => {
    const { page } = await signIn(f.operatorKey, { width: 390, height: 844 });
    await card(page).getByText(/^Last 1 h: 4 orders finished/).waitFor({ timeout: 20_000 });
    await card(page).getByText('The figures as a table').click();
    await card(page).getByLabel('Last 7 d').check();
    await card(page).getByText(/^Last 7 d: 4 orders finished/).waitFor({ timeout: 20_000 });
    const widths = await card(page).locator('svg').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().right));
    expect(widths).toHaveLength(3);
    for (const right of widths) expect(right).toBeLessThanOrEqual(390);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  });
});
