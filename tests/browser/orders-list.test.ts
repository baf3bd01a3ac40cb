import { readFileSync } from 'node:fs';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium } from '../harness/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * The Orders page of the console at fleet scale, in a real browser (Debian's chromium) against a real gateway:
 * 12,000 orders exist, and the operator finds the newest by its id, on the first page, pages back and forth, filters,
 * exports the filtered orders as CSV, and reads the list on a phone without scrolling sideways.
 */
const CLOSES = 'acme-em340-fw2.4';
const METERS = Array.from({ length: 20 }, (_, i) => `FS-${String(i).padStart(2, '0')}`);
let f: GatewayFixture;
let browser: Browser;
const contexts: BrowserContext[] = [];
let newest = '';

async function signIn(apiKey: string, viewport = { width: 1366, height: 860 }): Promise<Page> {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${f.gateway.apiUrl}/`);
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  return page;
}
const list = (page: Page) => page.getByRole('table', { name: /order\(s\) on this page/ });
const rowIds = (page: Page) => list(page).locator('tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.order ?? ''));
const openOrders = async (page: Page, hash = '#/orders') => {
  await page.goto(`${f.gateway.apiUrl}/console/${hash}`);
  await page.getByRole('heading', { level: 1, name: 'Orders' }).waitFor();
};

beforeAll(async () => {
  f = await startGatewayFixture(METERS.map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'connected' as const })));
  browser = await launchChromium();
  // 12,000 orders in two bulk requests: disconnects for arrears outside a plan, each refused (E_PLAN_REQUIRED) and
  // stored, nothing on the wire. Then the newest: one reconnect from billing.
  let n = 0;
  for (const size of [10_000, 2_000]) {
    const orders = Array.from({ length: size }, () => ({ meterId: METERS[n % METERS.length], action: 'disconnect', reason: 'arrears', reference: `ARR-${n}`, note: `bulk ${n++}` }));
    const res = await f.http('POST', '/v1/orders/bulk', { headers: { 'idempotency-key': `fs-bulk-${size}` }, body: { orders } });
    expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBeLessThan(300);
  }
  const last = await f.http('POST', '/v1/meters/FS-07/reconnect', { key: f.billingKey, headers: { 'idempotency-key': 'fs-newest' }, body: { reason: 'payment', paymentReceivedAt: new Date().toISOString(), note: 'paid at the post office' } });
  expect(last.status).toBe(202);
  newest = last.body.id;
  await f.waitForOrder(newest);
}, 300_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await f?.stop();
});

describe('the Orders page with 12,000 orders', () => {
  it('shows the newest order first on the first page, and finds it by its id', async () => {
    const page = await signIn(f.operatorKey);
    await openOrders(page);
    await expect.poll(() => rowIds(page), { timeout: 20_000 }).toHaveLength(100);
    expect((await rowIds(page))[0]).toBe(newest);
    expect(await list(page).locator('tbody tr').first().textContent()).toContain('paid at the post office');

    await page.getByLabel('Order id').fill(newest);
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => rowIds(page)).toEqual([newest]);
    // The start of an id finds it too (ids begin with their creation time).
    await page.getByLabel('Order id').fill(newest.slice(0, -4));
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(async () => (await rowIds(page))[0]).toBe(newest);
  });

  it('pages to older orders and back with Next page and Newer, as the API pages them', async () => {
    const api = (await f.http('GET', '/v1/orders?limit=300')).body.items.map((o: { id: string }) => o.id) as string[];
    const page = await signIn(f.operatorKey);
    await openOrders(page);
    await expect.poll(() => rowIds(page), { timeout: 20_000 }).toEqual(api.slice(0, 100));
    await page.getByRole('button', { name: 'Next page' }).click();
    await expect.poll(() => rowIds(page)).toEqual(api.slice(100, 200));
    await page.getByRole('button', { name: 'Next page' }).click();
    await expect.poll(() => rowIds(page)).toEqual(api.slice(200, 300));
    await page.getByRole('button', { name: 'Newer' }).click();
    await expect.poll(() => rowIds(page)).toEqual(api.slice(100, 200));
    await page.getByRole('button', { name: 'Newer' }).click();
    await expect.poll(() => rowIds(page)).toEqual(api.slice(0, 100));
    expect(await page.getByRole('button', { name: 'Newer' }).count()).toBe(0);
  });

  it('filters by meter, state, type, reason, requester, note and time, and exports what the filters match as CSV', async () => {
    const page = await signIn(f.operatorKey);
    await openOrders(page);
    await page.getByLabel('Type').selectOption('reconnect');
    await page.getByLabel('Asked by').fill('demo-billing');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => rowIds(page)).toEqual([newest]);

    await openOrders(page);
    await page.getByLabel('Meter', { exact: true }).fill('FS-03');
    await page.getByLabel('State').selectOption('refused');
    await page.getByLabel('Because').selectOption('arrears');
    await page.getByLabel('Note contains').fill('bulk 1190');
    await page.getByRole('button', { name: 'Apply' }).click();
    // FS-03 has every 20th order from bulk 3: of "bulk 1190…", those are 11903 only ("bulk 1190" itself is FS-10).
    await expect.poll(() => list(page).locator('tbody tr').count()).toBe(1);
    expect(await list(page).textContent()).toContain('bulk 11903');

    // A time range that ends before the first order: nothing.
    await openOrders(page);
    await page.getByLabel('Created before').fill('2020-01-01T00:00');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => list(page).textContent()).toContain('No orders match.');

    await openOrders(page, '#/orders?meterId=FS-07');
    const download = page.waitForEvent('download');
    await page.getByRole('link', { name: 'Export CSV' }).click();
    const csv = readFileSync((await (await download).path())!, 'utf8').trimEnd().split('\r\n');
    expect(csv[0]).toMatch(/^id,createdAt,meterId,action,/);
    expect(csv).toHaveLength(1 + 600 + 1); // the header, FS-07's 600 bulk orders and the newest
    expect(csv[1]!.startsWith(`${newest},`)).toBe(true);
  });

  it('at phone width (390 px) the list stacks its rows and nothing scrolls sideways', async () => {
    const page = await signIn(f.operatorKey, { width: 390, height: 844 });
    await openOrders(page);
    await expect.poll(() => rowIds(page), { timeout: 20_000 }).toHaveLength(100);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    expect((await list(page).locator('tbody tr').first().textContent()) ?? '').toContain(newest);
  });
});
