import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium } from '../harness/chromium.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * The console on a phone (390×844) and at fleet scale, in a real browser against a real gateway: no page scrolls
 * sideways, a field crew starts at its work orders and assigns and completes one, the overview stays a compact
 * dashboard with 2,000 meters, and nothing of one user (a bulk result, a name in the header) is left for the next.
 */
const HOUR = 3_600_000;
const CLOSES = 'acme-em340-fw2.4';
const PHONE = { width: 390, height: 844 };
const DESK = { width: 1440, height: 900 };
const ARTIFACTS = join(process.cwd(), 'tests', 'browser', 'artifacts');
const meters: TestMeter[] = [
  { meterId: 'PH-1', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
  { meterId: 'PH-2', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
  { meterId: 'PH-OFF', profileId: CLOSES, initialRelay: 'disconnected', region: 'east' },
];
const FLEET = Array.from({ length: 2_000 }, (_, i) => `FLT-${String(i).padStart(5, '0')}`);

let f: GatewayFixture;
let browser: Browser;
const contexts: BrowserContext[] = [];
let n = 0;
const key = () => ({ 'idempotency-key': `phone-${++n}` });
let orderId = '';
let planId = '';

async function open(viewport = PHONE): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  page.on('dialog', (d) => void d.accept());
  await page.goto(`${f.gateway.apiUrl}/`);
  return page;
}
async function signIn(page: Page, apiKey: string, landing = 'Overview'): Promise<void> {
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: landing }).waitFor();
}
/** Open a console route and wait until its page has loaded its data (main is no longer aria-busy). */
async function visit(page: Page, hash: string): Promise<void> {
  await page.goto(`${f.gateway.apiUrl}/console/${hash}`);
  await page.locator('main[aria-busy="false"] h1').waitFor();
}
const scrollWidth = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth);
const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  f = await startGatewayFixture(meters, {
    escalation: { fieldLeadHours: 8, regionLeadHours: {}, dueMarginMinutes: 60, slowRetryMs: 500, disconnectFailures: false, scanEveryMs: 200 },
  });
  browser = await launchChromium();
  // 2,000 more meters, registered (not simulated): the fleet the overview and the Meters page must cope with.
  for (let i = 0; i < FLEET.length; i += 50) {
    const batch = await Promise.all(FLEET.slice(i, i + 50).map((id) => f.http('PUT', `/v1/meters/${id}`, { body: { profileId: CLOSES, link: 'dc-fleet', region: i % 100 === 0 ? 'south' : 'west' } })));
    for (const r of batch) expect(r.status).toBe(200);
  }
  // A reconnect that cannot finish remotely in time: a work order for the field (7 h left, under the 8 h lead).
  f.fleet.meter('PH-OFF').offlineUntil(Date.now() + HOUR);
  const r = await f.http('POST', '/v1/meters/PH-OFF/reconnect', { key: f.billingKey, headers: key(), body: { reason: 'payment', paymentReceivedAt: new Date(Date.now() - 17 * HOUR).toISOString() } });
  expect(r.status).toBe(202);
  orderId = r.body.id;
  const plan = await f.http('POST', '/v1/plans', { headers: key(), body: { reason: 'arrears', windowFrom: new Date(Date.now() + HOUR).toISOString(), windowTo: new Date(Date.now() + 30 * HOUR).toISOString(), meters: ['PH-2'], note: 'a plan with a long note that should wrap rather than widen a phone page' } });
  expect(plan.status, JSON.stringify(plan.body)).toBe(201);
  planId = plan.body.id;
  await vi.waitFor(async () => expect((await f.http('GET', '/v1/work-orders?status=open')).body.items).toHaveLength(1), { timeout: 20_000, interval: 200 });
}, 300_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await f?.stop();
});

describe('the console on a phone (390 × 844)', () => {
  it('no page scrolls sideways: every route in the nav, a meter page, an order page, a plan page and sign-in', async () => {
    const page = await open();
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390); // the sign-in page
    await signIn(page, f.operatorKey);
    const routes = await page.locator('#nav a').evaluateAll((as) => as.map((a) => a.getAttribute('href')!));
    expect(routes.length).toBeGreaterThanOrEqual(10); // the nav's pages (Overview … API keys)
    const visibleTo = (p: Page) => p.locator('#nav li:not([hidden]) a').evaluateAll((as) => as.map((a) => a.getAttribute('href')!));
    // The operator sees most pages; an admin the rest (audit log, API keys).
    const admin = await open();
    await signIn(admin, f.adminKey);
    const asOperator = await visibleTo(page);
    const asAdmin = (await visibleTo(admin)).filter((r) => !asOperator.includes(r));
    expect([...asOperator, ...asAdmin].sort()).toEqual([...routes].sort());
    const widths: Record<string, number> = {};
    for (const [p, hashes] of [
      [page, [...asOperator, '#/meters/PH-1', `#/orders/${orderId}`, `#/plans/${planId}`]],
      [admin, asAdmin],
    ] as const) {
      for (const hash of hashes) {
        await visit(p, hash);
        widths[hash] = await scrollWidth(p);
      }
    }
    expect(Object.keys(widths).sort()).toEqual([...new Set([...routes, '#/meters/PH-1', `#/orders/${orderId}`, `#/plans/${planId}`])].sort());
    expect(Object.entries(widths).filter(([, w]) => w > 390)).toEqual([]);

    // The nav folds behind "Menu": opened, every item is there and the page is still no wider.
    await visit(page, '#/overview');
    const menu = page.getByRole('button', { name: 'Menu' });
    expect(await menu.getAttribute('aria-expanded')).toBe('false');
    expect(await page.getByRole('link', { name: 'Orders', exact: true }).isVisible()).toBe(false);
    await menu.click();
    expect(await menu.getAttribute('aria-expanded')).toBe('true');
    await page.getByRole('link', { name: 'Orders', exact: true }).waitFor();
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
    await page.getByRole('link', { name: 'Orders', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Orders' }).waitFor();
    expect(await menu.getAttribute('aria-expanded')).toBe('false');
  }, 90_000);

  it('a field crew lands on Work orders, assigns one to itself and completes it, and sees it done', async () => {
    const page = await open();
    await signIn(page, f.fieldKey, 'Work orders');
    expect(await page.locator('#nav li:not([hidden]) a').first().textContent()).toBe('Work orders');
    const card = page.locator('tr[data-meter="PH-OFF"]');
    await card.waitFor({ timeout: 20_000 });
    expect(await card.textContent()).toMatch(/^urgent/);
    const me = (await f.http('GET', '/v1/whoami', { key: f.fieldKey })).body.clientId as string;
    // "Assign…" hands it to a crew by name; "Assign to me" takes it.
    await card.getByText('Assign…', { exact: true }).click();
    const assign = card.getByRole('form', { name: 'Assign the work order for meter PH-OFF' });
    await assign.getByLabel('Assign to').fill('crew-east-2');
    await assign.getByRole('button', { name: 'Assign', exact: true }).click();
    await expect.poll(() => page.locator('#wo-result').textContent()).toBe('Work order for meter PH-OFF: assigned (crew-east-2)');
    await expect.poll(() => card.locator('td[data-label="Status"]').textContent()).toBe('assigned (crew-east-2)');
    await card.getByRole('button', { name: 'Assign the work order for meter PH-OFF to me' }).click();
    await expect.poll(() => page.locator('#wo-result').textContent()).toBe(`Work order for meter PH-OFF: assigned (${me})`);
    await expect.poll(() => card.locator('td[data-label="Status"]').textContent()).toBe(`assigned (${me})`);
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
    await shot(page, 'phone-work-orders');

    await card.getByText('Complete', { exact: true }).click();
    const form = card.getByRole('form', { name: 'Complete the work order for meter PH-OFF' });
    await form.getByLabel('What was found').selectOption('reconnected');
    await form.getByLabel('Note').fill('relay closed by hand, supply checked');
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
    // While an attempt to the meter is on the wire the gateway asks to report again in a few seconds: the crew does.
    const send = form.getByRole('button', { name: 'Complete work order' });
    await send.click();
    await expect
      .poll(
        async () => {
          const said = (await page.locator('#wo-result').textContent()) ?? '';
          if (said.startsWith('E_ORDER_ON_WIRE')) await send.click();
          return said;
        },
        { timeout: 40_000, interval: 1_000 },
      )
      .toMatch(/^Work order for meter PH-OFF: done \(.+\) — reconnected: relay closed on site; order ord_\S+ done by field$/);
    // Done, it leaves the list of work to do; listed as done, it shows who did it.
    await expect.poll(() => page.locator('tr[data-meter="PH-OFF"]').count()).toBe(0);
    await page.getByLabel('Status').selectOption('done');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.locator('tr[data-meter="PH-OFF"] td[data-label="Status"]').textContent()).toBe(`done (${me})`);
    expect((await f.http('GET', `/v1/orders/${orderId}`)).body.state).toBe('done_by_field');
  }, 90_000);

  it('sign-out after a bulk result: the next user does not see it; the bulk error names the unknown meters', async () => {
    const page = await open();
    await signIn(page, f.operatorKey);
    await visit(page, '#/orders');
    await page.getByRole('textbox', { name: 'Meters' }).fill('PH-1, NOPE-1, FLT-00007, NOPE-2');
    await page.getByRole('button', { name: 'Create bulk orders' }).click();
    const unknown = page.getByRole('list', { name: 'Unknown meters' });
    await expect.poll(() => unknown.locator('li').allTextContents()).toEqual(['NOPE-1', 'NOPE-2']);
    expect(await page.getByRole('alert').textContent()).toMatch(/^E_METER_NOT_FOUND: 2 order\(s\) name meters that are not registered/);
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
    await unknown.scrollIntoViewIfNeeded();
    await shot(page, 'phone-orders');

    await page.getByRole('textbox', { name: 'Meters' }).fill('PH-1');
    await page.getByRole('button', { name: 'Create bulk orders' }).click();
    await expect.poll(() => page.locator('#bulk-progress').textContent()).toMatch(/^Bulk reconnect: \d of 1 finished/);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    expect(await page.locator('#who-name').textContent()).toBe('');

    await signIn(page, f.supervisorKey);
    await visit(page, '#/orders');
    await page.getByRole('table', { name: /order\(s\) on this page/ }).waitFor();
    expect(await page.locator('main').textContent()).not.toMatch(/Bulk reconnect|NOPE-1/);
  }, 90_000);

  it('a key that stops working (401) leaves no name or role in the header beside the sign-in form', async () => {
    const created = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: key(), body: { name: 'crew-revoked', role: 'field' } });
    expect(created.status).toBe(201);
    const page = await open();
    await signIn(page, created.body.key, 'Work orders');
    expect(await page.locator('#who-name').textContent()).toBe('crew-revoked');
    expect((await f.http('DELETE', `/v1/keys/${created.body.id}`, { key: f.adminKey, headers: key() })).status).toBe(200);
    // The next request (the list refreshes every 5 s; here a click) is refused.
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor({ timeout: 15_000 });
    expect(await page.locator('#who').isVisible()).toBe(false);
    expect(await page.locator('header').textContent()).not.toMatch(/crew-revoked|field/);

    // The same with a key in session storage that the gateway does not know (a restarted demo's old key).
    const other = await open();
    await signIn(other, f.operatorKey);
    await other.evaluate(() => sessionStorage.setItem('meterline.key', 'ml_not_a_key'));
    await other.goto(`${f.gateway.apiUrl}/console/#/orders`);
    await other.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    expect(await other.locator('#who').isVisible()).toBe(false);
    expect(await other.locator('header').textContent()).not.toMatch(/operator/);
  }, 90_000);
});

describe('the console at fleet scale (2,000 meters more)', () => {
  it('the overview is a compact dashboard; the Meters page lists the meters 50 at a time and searches them', async () => {
    const page = await open(DESK);
    await signIn(page, f.operatorKey);
    await expect.poll(() => page.locator('.big').first().textContent()).toBe(`${FLEET.length + meters.length} meters`);
    await page.locator('main[aria-busy="false"]').waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollHeight)).toBeLessThan(3_000);
    expect(await page.getByRole('table', { name: /^Meters/ }).count()).toBe(0);
    // At desk width the nav is a row of links, and "Menu" (for phones) is not shown.
    const nav = (p: Page) => p.getByRole('navigation', { name: 'Console sections' });
    expect(await nav(page).getByRole('button', { name: 'Menu' }).isVisible()).toBe(false);
    expect(await nav(page).getByRole('link', { name: 'Orders', exact: true }).isVisible()).toBe(true);

    await page.getByRole('link', { name: 'List and search the meters' }).click();
    const list = page.getByRole('table', { name: /^Meters/ });
    await expect.poll(() => list.locator('tbody tr').count()).toBe(50);
    expect(await list.locator('caption').textContent()).toBe(`Meters 1–50 of ${FLEET.length + meters.length}`);
    expect(await list.locator('tr[data-meter="FLT-00000"]').textContent()).toMatch(/never read.*none/);
    await page.getByRole('button', { name: 'Next page' }).click();
    await expect.poll(() => list.locator('caption').textContent()).toBe(`Meters 51–100 of ${FLEET.length + meters.length}`);
    await page.getByRole('searchbox', { name: 'Search meters' }).fill('FLT-0199');
    await page.getByRole('button', { name: 'Search' }).click();
    await expect.poll(() => list.locator('tbody tr').count()).toBe(10);
    expect(await page.evaluate(() => document.documentElement.scrollHeight)).toBeLessThan(3_000);

    const phone = await open();
    await signIn(phone, f.operatorKey);
    await phone.locator('main[aria-busy="false"]').waitFor();
    expect(await scrollWidth(phone)).toBeLessThanOrEqual(390);
    // On a phone the links fold behind "Menu" until it is opened.
    expect(await nav(phone).getByRole('link', { name: 'Orders', exact: true }).isVisible()).toBe(false);
    await nav(phone).getByRole('button', { name: 'Menu' }).click();
    expect(await nav(phone).getByRole('link', { name: 'Orders', exact: true }).isVisible()).toBe(true);
    await nav(phone).getByRole('button', { name: 'Menu' }).click();
    await shot(phone, 'phone-overview');
  }, 90_000);

  it('a meter page shows the last reading with its time, and says "never read" only for a meter with none', async () => {
    expect((await f.http('GET', '/v1/meters/PH-1/supply')).status).toBe(200); // read it once
    const page = await open(DESK);
    await signIn(page, f.operatorKey);
    await visit(page, '#/meters/PH-1');
    await expect.poll(() => page.locator('#meter-relay').textContent()).toBe('connected');
    expect(await page.locator('#meter-last-reading').textContent()).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC([+-]\d+(:\d{2})?)? by \w+/);
    expect(await page.locator('main').textContent()).not.toContain('never read');
    // No raw ISO time anywhere on the page: every time is shown the one way, naming its zone.
    expect(await page.locator('main').textContent()).not.toMatch(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/);

    await visit(page, '#/meters/FLT-00001');
    await expect.poll(() => page.locator('#meter-relay').textContent()).toBe('never read');
    expect(await page.locator('#meter-last-reading').textContent()).toBe('none yet');
  }, 90_000);
});
