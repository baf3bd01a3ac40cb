import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium } from '../harness/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * The operator console in a real browser (Debian's chromium driven by playwright-core) against a real gateway,
 * mosquitto and a simulated MQTT fleet. Every assertion is about what a user sees on the page.
 */
const HOUR = 3_600_000;
const CLOSES = 'acme-em340-fw2.4';
const ARTIFACTS = join(process.cwd(), 'tests', 'browser', 'artifacts');
const meters: TestMeter[] = [
  { meterId: 'CON-1', profileId: CLOSES, initialRelay: 'disconnected', region: 'north' },
  { meterId: 'CON-2', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
  { meterId: 'CON-3', profileId: 'volta-pp20-fw1.7', initialRelay: 'connected', region: 'south' },
  { meterId: 'OFF-1', profileId: CLOSES, initialRelay: 'disconnected', region: 'east', link: 'dc-east' },
  { meterId: 'CON-4', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
  { meterId: 'CON-5', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
  { meterId: 'CON-6', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
];

let f: GatewayFixture;
let browser: Browser;
const contexts: BrowserContext[] = [];
let n = 0;
const key = () => ({ 'idempotency-key': `browser-${++n}` });

async function signIn(apiKey: string, landing = 'Overview'): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 } });
  contexts.push(context);
  const page = await context.newPage();
  page.on('dialog', (d) => void d.accept());
  await page.goto(`${f.gateway.apiUrl}/`);
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: landing }).waitFor();
  return page;
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  f = await startGatewayFixture(meters, {
    escalation: { fieldLeadHours: 8, regionLeadHours: {}, dueMarginMinutes: 60, slowRetryMs: 500, disconnectFailures: false, scanEveryMs: 200 },
    // An RS-485 adapter that is not plugged in: a link that is down from the start, for the overview's links table.
    modbus: { rtu: { 'bus-unplugged': { path: '/dev/ttyMeterlineNone9', baudRate: 9600, parity: 'even', dataBits: 8, stopBits: 1, frameRetries: 2, noiseGapMs: 20, reopenMs: 500 } }, tcp: {} },
  });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await f?.stop();
});

describe('operator console', () => {
  it('signs in with an API key and shows the simulated fleet, the queue and the success-rate charts with the alert threshold', async () => {
    // Read every meter once, so the overview has relay states to show (the simulator starts unread).
    for (const m of meters.filter((m) => m.meterId !== 'OFF-1')) expect((await f.http('GET', `/v1/meters/${m.meterId}/supply`)).status).toBe(200);
    const page = await signIn(f.operatorKey);
    await expect.poll(() => page.locator('#who-role').textContent()).toBe('operator');
    await expect.poll(() => page.locator('.big').first().textContent()).toBe('7 meters');
    await expect.poll(() => page.locator('#live-state').textContent(), { timeout: 5000 }).toBe('live: on');
    await page.getByRole('img', { name: /Success rate per firmware profile; alert threshold 95%/ }).waitFor();
    expect(await page.locator('svg.chart .threshold').count()).toBe(2);
    await shot(page, 'overview');
    // The per-meter list is on the Meters page.
    await page.getByRole('link', { name: 'List and search the meters' }).click();
    const fleet = page.getByRole('table', { name: /^Meters/ });
    for (const m of meters) await expect.poll(() => fleet.getByRole('link', { name: m.meterId }).count()).toBe(1);
    expect(await fleet.locator('tr[data-meter="CON-1"]').textContent()).toContain('disconnected');
    expect(await fleet.locator('tr[data-meter="CON-2"]').textContent()).toContain('connected');
  });

  it('the overview shows each link with its state, since when and its last error (the counters are on the Links page); at phone width (390 px) without sideways scrolling', async () => {
    const page = await signIn(f.operatorKey);
    const links = page.getByRole('table', { name: /^Links/ });
    const bus = links.locator('tr[data-link="bus-unplugged"]');
    await expect.poll(() => bus.textContent()).toMatch(/bus-unplugged\s*modbus-rtu\s*down\s*since .*cannot open serial port \/dev\/ttyMeterlineNone9/);
    await expect.poll(() => links.locator(`tr[data-link="${f.broker.url}"]`).textContent()).toMatch(/mqtt\s*up\s*since/);
    expect(await page.getByRole('status').filter({ hasText: 'link(s) down' }).textContent()).toMatch(/^1 link\(s\) down/);
    await page.setViewportSize({ width: 390, height: 844 });
    await expect.poll(() => bus.locator('td[data-label="Last error"]').isVisible()).toBe(true);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.getByRole('heading', { name: 'Links' }).scrollIntoViewIfNeeded();
    await shot(page, 'overview-links-390');
  });

  it('reconnects a meter from its page and shows the relay change, the order and the supply answer', async () => {
    const page = await signIn(f.operatorKey);
    await page.getByRole('link', { name: 'Meters', exact: true }).click();
    await page.getByRole('link', { name: 'CON-1' }).click();
    await page.getByRole('heading', { level: 1, name: 'Meter CON-1' }).waitFor();
    await expect.poll(() => page.locator('#meter-relay').textContent()).toBe('disconnected');
    await expect.poll(() => page.locator('#supply-status').textContent(), { timeout: 10_000 }).toBe('disconnected without order');
    await page.getByRole('button', { name: 'Reconnect' }).click();
    await expect.poll(() => page.locator('#action-result').textContent(), { timeout: 15_000 }).toMatch(/Order ord_\S+ \(reconnect\): done/);
    await expect.poll(() => page.locator('#meter-relay').textContent(), { timeout: 10_000 }).toBe('connected');
    await expect.poll(() => page.getByRole('table', { name: /^Timeline/ }).textContent(), { timeout: 10_000 }).toContain('attempt 1 of reconnect: ok, read back connected');
    await expect.poll(() => page.locator('#supply-status').textContent(), { timeout: 10_000 }).toBe('on supply');
    expect(f.fleet.meter('CON-1').relay).toBe('connected');
    await shot(page, 'meter');
  });

  it('a refused disconnect shows the rule’s code and message; only the reasons the key may use are offered', async () => {
    // The meter is in protected mode (保电): every disconnect is refused.
    expect((await f.http('PUT', '/v1/meters/CON-2/flags', { key: f.billingKey, headers: key(), body: { protectedMode: true } })).status).toBe(200);
    const page = await signIn(f.operatorKey);
    await page.goto(`${f.gateway.apiUrl}/console/#/meters/CON-2`);
    await page.getByRole('heading', { level: 1, name: 'Meter CON-2' }).waitFor();
    // Arrears go through plans and credit cut-offs are credit control's: an operator is offered neither.
    const offered = await page.getByLabel('Disconnect reason').locator('option').allTextContents();
    expect(offered.sort()).toEqual(['customer_request', 'safety', 'vacant_premises']);
    await page.getByLabel('Disconnect reason').selectOption('customer_request');
    await page.getByLabel('Reference').fill('CRM-4411');
    await page.getByRole('button', { name: 'Disconnect' }).click();
    const alert = page.locator('#action-result [role="alert"]');
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(/^E_PROTECTED_MODE: .*protected mode/);
    expect(f.fleet.meter('CON-2').relay).toBe('connected');
  });

  it('sets a demand limit from the meter page: verified by read-back, shown in force, and the orders list says it in watts', async () => {
    const page = await signIn(f.operatorKey);
    await page.goto(`${f.gateway.apiUrl}/console/#/meters/CON-5`);
    await page.getByRole('heading', { level: 1, name: 'Meter CON-5' }).waitFor();
    await page.getByLabel('Limit (W)').fill('1500');
    await page.getByRole('button', { name: 'Set limit' }).click();
    await expect.poll(() => page.locator('#action-result').textContent(), { timeout: 15_000 }).toMatch(/Order ord_\S+ \(limit 1500 W\): done/);
    await expect.poll(() => page.locator('#meter-limit').textContent(), { timeout: 10_000 }).toMatch(/^1500 W \(arrears\) since /);
    expect(f.fleet.meter('CON-5').loadLimitW).toBe(1500);
    expect(f.fleet.meter('CON-5').relay).toBe('connected');
    await page.goto(`${f.gateway.apiUrl}/console/#/orders?meterId=CON-5`);
    await expect.poll(() => page.getByRole('table', { name: /order\(s\)/ }).textContent(), { timeout: 10_000 }).toContain('limit 1500 W');
  });

  it('limits several meters at once from the bulk form: the lines are created, verified, and the progress says so', async () => {
    const page = await signIn(f.operatorKey);
    await page.goto(`${f.gateway.apiUrl}/console/#/orders`);
    await page.getByRole('heading', { level: 1, name: 'Orders' }).waitFor();
    await page.getByLabel('Action').selectOption('limit');
    await page.getByLabel('Limit (W)').fill('900');
    await expect.poll(() => page.getByLabel('Reason').inputValue()).toBe('arrears');
    await page.getByLabel('Meters', { exact: true }).fill('CON-6');
    await page.getByRole('button', { name: 'Create bulk orders' }).click();
    await expect.poll(() => page.locator('#bulk-progress h3').textContent(), { timeout: 15_000 }).toBe('Bulk limit: 1 of 1 finished');
    expect(f.fleet.meter('CON-6').loadLimitW).toBe(900);
    expect(f.fleet.meter('CON-6').relay).toBe('connected');
  });

  it('a protected customer’s own request waits for a supervisor: only a supervisor who did not ask sees Approve, and approving sends it', async () => {
    expect((await f.http('PUT', '/v1/meters/CON-4/flags', { key: f.billingKey, headers: key(), body: { vulnerable: true } })).status).toBe(200);
    const asked = await f.http('POST', '/v1/meters/CON-4/disconnect', { headers: key(), body: { reason: 'customer_request', reference: 'CRM-7001', note: 'moving out' } });
    expect(asked.status).toBe(202);
    expect(asked.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    const id = asked.body.id as string;
    // The operator who asked: no Approve button.
    const operator = await signIn(f.operatorKey);
    await operator.goto(`${f.gateway.apiUrl}/console/#/orders?meterId=CON-4`);
    await operator.locator(`tr[data-order="${id}"]`).waitFor();
    expect(await operator.getByRole('button', { name: /^Approve disconnect/ }).count()).toBe(0);
    expect(f.fleet.meter('CON-4').relay).toBe('connected');
    // The same person's supervisor key (issued to the operator's client by its id): no Approve button either.
    const own = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: key(), body: { clientId: 'demo-operator', role: 'supervisor' } });
    expect(own.status, JSON.stringify(own.body)).toBe(201);
    const ownSupervisor = await signIn(own.body.key);
    await ownSupervisor.goto(`${f.gateway.apiUrl}/console/#/orders?meterId=CON-4`);
    await ownSupervisor.locator(`tr[data-order="${id}"]`).waitFor();
    expect(await ownSupervisor.getByRole('button', { name: /^Approve disconnect/ }).count()).toBe(0);
    // A supervisor approves it.
    const supervisor = await signIn(f.supervisorKey);
    await supervisor.goto(`${f.gateway.apiUrl}/console/#/orders?meterId=CON-4`);
    await supervisor.getByRole('button', { name: `Approve disconnect ${id} (customer_request, CRM-7001)` }).click();
    expect((await f.waitForOrder(id)).state).toBe('done');
    expect((await f.http('GET', `/v1/orders/${id}`)).body).toMatchObject({ approvedBy: 'demo-supervisor' });
    expect(f.fleet.meter('CON-4').relay).toBe('disconnected');
  });

  it('a reconnect that cannot finish remotely shows up as a work order with its deadline, most urgent first', async () => {
    f.fleet.meter('OFF-1').offlineUntil(Date.now() + HOUR);
    const paidAt = Date.now() - 17 * HOUR; // 7 h left of the 24 h: less than the 8 h field lead, so it goes to the field at once
    const r = await f.http('POST', '/v1/meters/OFF-1/reconnect', { key: f.billingKey, headers: key(), body: { reason: 'payment', paymentReceivedAt: new Date(paidAt).toISOString() } });
    expect(r.status).toBe(202);
    const page = await signIn(f.operatorKey);
    await page.getByRole('link', { name: 'Work orders' }).click();
    await page.getByRole('heading', { level: 1, name: 'Work orders' }).waitFor();
    const row = page.locator('tr[data-meter="OFF-1"]');
    await row.waitFor({ timeout: 20_000 });
    const deadline = new Date(paidAt + 24 * HOUR);
    const p = (x: number) => String(x).padStart(2, '0');
    const shown = `${deadline.getFullYear()}-${p(deadline.getMonth() + 1)}-${p(deadline.getDate())} ${p(deadline.getHours())}:${p(deadline.getMinutes())}`;
    const text = (await row.textContent()) ?? '';
    expect(text).toContain(shown);
    expect(text).toMatch(/^urgent/);
    expect(text).toMatch(/[67] h \d+ min/);
    expect(await row.getAttribute('class')).toBe('u-urgent');
    await shot(page, 'work-orders');
  });

  it('lists and filters orders, and drafts a plan that a supervisor approves and watches run', async () => {
    const page = await signIn(f.operatorKey);
    await page.getByRole('link', { name: 'Orders', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Orders' }).waitFor();
    await page.getByLabel('Meter', { exact: true }).fill('CON-1');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.getByRole('table', { name: /order\(s\)/ }).locator('tbody tr').count()).toBe(1);
    expect(await page.getByRole('table', { name: /order\(s\)/ }).textContent()).toContain('done');
    await shot(page, 'orders');

    await page.getByRole('link', { name: 'Plans' }).click();
    await page.getByRole('heading', { level: 1, name: 'Disconnect plans' }).waitFor();
    await page.getByLabel('Meters').fill('CON-3');
    await page.getByRole('button', { name: 'Draft plan' }).click();
    await page.getByRole('heading', { level: 1, name: /^Plan plan_|^Plan / }).waitFor();
    const planUrl = page.url();
    expect(await page.locator('#plan-status').textContent()).toBe('draft');
    expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0); // the operator may not approve

    const sup = await signIn(f.supervisorKey);
    await sup.goto(planUrl);
    await sup.getByRole('button', { name: 'Approve' }).click();
    await expect.poll(() => sup.locator('#plan-status').textContent()).toBe('approved');
    await expect.poll(() => sup.getByRole('table', { name: 'Per meter' }).textContent()).toMatch(/CON-3(held|refused|queued|done|in flight)/);
    await shot(sup, 'plan');
  });

  it('a field key sees the meter and its work orders but no switching buttons', async () => {
    const created = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: key(), body: { name: 'crew-7', role: 'field' } });
    expect(created.status).toBe(201);
    const page = await signIn(created.body.key, 'Work orders');
    expect(await page.locator('#who-role').textContent()).toBe('field');
    expect(await page.getByRole('link', { name: 'Plans' }).isVisible()).toBe(false);
    await page.goto(`${f.gateway.apiUrl}/console/#/meters/CON-2`);
    await page.getByRole('heading', { level: 1, name: 'Meter CON-2' }).waitFor();
    await page.getByText('The field role cannot switch meters; this page is read-only.').waitFor();
    expect(await page.getByRole('button', { name: /^(Reconnect|Disconnect)$/ }).count()).toBe(0);
    await page.getByRole('link', { name: 'Work orders' }).click();
    await page.locator('tr[data-meter="OFF-1"]').waitFor();
    await shot(page, 'field-meter');
  });

  it('serves only console files, with their content types', async () => {
    const get = (path: string) => fetch(f.gateway.apiUrl + path, { redirect: 'manual' });
    expect((await get('/')).headers.get('location')).toBe('/console/');
    expect((await get('/console/app.js')).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await get('/console/style.css')).headers.get('content-type')).toBe('text/css; charset=utf-8');
    for (const bad of ['/console/..%2f..%2fpackage.json', '/console/%2e%2e/%2e%2e/package.json', '/console/pages/../../../package.json', '/console/.hidden.js', '/console/nope.js']) {
      const res = await get(bad);
      expect(res.status, bad).toBe(404);
    }
    expect((await get('/v1/events')).status).toBe(401);
  });
});
