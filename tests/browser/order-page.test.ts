import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium } from '../harness/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * The order page of the console (#/orders/<id>) in a real browser (Debian's chromium driven by playwright-core)
 * against a real gateway, mosquitto and a simulated MQTT fleet, at desk width and on a phone (390 × 844): what an
 * operator reads about one order — its attempts and their evidence, its state changes, and the rules it passed or
 * was stopped by.
 */
const CLOSES = 'acme-em340-fw2.4';
const ARTIFACTS = join(process.cwd(), 'tests', 'browser', 'artifacts');
const DESK = { width: 1366, height: 860 };
const PHONE = { width: 390, height: 844 };

let f: GatewayFixture;
let browser: Browser;
const contexts: BrowserContext[] = [];
let n = 0;
const key = () => ({ 'idempotency-key': `order-page-${++n}` });
/** A reconnect whose first command the meter drops (attempt 1 times out) and whose retry succeeds. */
let retried = '';
/** A disconnect for arrears outside a plan: refused at once with E_PLAN_REQUIRED. */
let refused = '';

async function signIn(apiKey: string, viewport = DESK): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${f.gateway.apiUrl}/`);
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  return page;
}

async function openOrder(page: Page, id: string): Promise<void> {
  await page.goto(`${f.gateway.apiUrl}/console/#/orders/${encodeURIComponent(id)}`);
  await page.getByRole('heading', { level: 1, name: `Order ${id}` }).waitFor();
  await page.getByRole('heading', { level: 2, name: 'Facts' }).waitFor();
}

const attempts = (page: Page) => page.locator('#order-attempts li.attempt');
const ruleRow = (page: Page, rule: string) => page.locator(`#order-rules tr[data-rule="${rule}"]`);

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  f = await startGatewayFixture([
    { meterId: 'OP-1', profileId: CLOSES, initialRelay: 'disconnected', region: 'north' },
    { meterId: 'OP-2', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
  ]);
  browser = await launchChromium();
  f.fleet.meter('OP-1').dropCommands(1);
  const r = await f.http('POST', '/v1/meters/OP-1/reconnect', { key: f.billingKey, headers: key(), body: { reason: 'payment', note: 'paid at the counter' } });
  expect(r.status).toBe(202);
  retried = r.body.id;
  const done = await f.waitForOrder(retried);
  expect(done.state).toBe('done');
  expect(done.attempts.map((a: { outcome: string }) => a.outcome)).toEqual(['timeout', 'ok']);
  const d = await f.http('POST', '/v1/meters/OP-2/disconnect', { key: f.operatorKey, headers: key(), body: { reason: 'arrears' } });
  expect(d.body.code).toBe('E_PLAN_REQUIRED');
  refused = d.body.details.order.id;
}, 120_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await f?.stop();
});

describe('the order page', () => {
  it('a reconnect whose first command was lost: two attempts with their outcomes and read-back evidence, and its events', async () => {
    const page = await signIn(f.operatorKey);
    await openOrder(page, retried);
    await expect.poll(() => page.locator('#order-state').textContent()).toContain('done');
    await expect.poll(() => attempts(page).count()).toBe(2);
    expect(await attempts(page).nth(0).locator('h3').textContent()).toContain('timeout');
    expect(await attempts(page).nth(1).locator('h3').textContent()).toContain('ok');
    // The read-back of the attempt that worked, opened from its <details>, as readable lines.
    const second = attempts(page).nth(1);
    await second.getByText('Evidence of attempt 2').click();
    const readBack = second.locator('div.evidence', { has: page.getByRole('heading', { name: 'Read-back' }) });
    await expect.poll(() => readBack.locator('dt').allTextContents()).toContain('relay');
    expect(await readBack.textContent()).toContain('connected');
    expect(await second.locator('dd').allTextContents()).toContain('connected'); // the relay read back
    // Every state change: from → to, with why; the first names who asked.
    const events = page.getByRole('table', { name: /Every state change/ });
    const text = await events.textContent();
    for (const word of ['accepted', 'queued', 'in flight', 'done', 'attempt 2', 'demo-billing']) expect(text).toContain(word);
    expect(await page.locator('#order-rules').textContent()).toContain('rule 12');
    // Reached from the meter's timeline.
    await page.goto(`${f.gateway.apiUrl}/console/#/meters/OP-1`);
    await page.locator(`a[href="#/orders/${retried}"]`).first().click();
    await page.getByRole('heading', { level: 1, name: `Order ${retried}` }).waitFor();
    for (const s of await page.locator('li.attempt summary').all()) await s.click();
    await page.setViewportSize({ width: 1366, height: 1400 });
    await page.screenshot({ path: join(ARTIFACTS, 'order-page.png'), fullPage: true });
  });

  it('a refused disconnect shows the rule that stopped it with its code, and the rules after it as not checked', async () => {
    const page = await signIn(f.operatorKey);
    await openOrder(page, refused);
    await expect.poll(() => page.locator('#order-refusal').textContent()).toContain('E_PLAN_REQUIRED');
    const plan = ruleRow(page, 'plan');
    expect(await plan.getAttribute('data-outcome')).toBe('stopped');
    expect(await plan.textContent()).toContain('E_PLAN_REQUIRED');
    expect(await plan.textContent()).toContain('rule 7');
    expect(await ruleRow(page, 'protectedMode').textContent()).toContain('passed');
    expect(await ruleRow(page, 'notice').textContent()).toContain('not checked');
    // An arrears disconnect needs no reference and is no credit cut-off: those rules are listed apart, folded.
    expect(await ruleRow(page, 'authority').getAttribute('data-outcome')).toBe('not_applicable');
    expect(await ruleRow(page, 'authority').isVisible()).toBe(false);
    expect(await page.locator('#order-attempts').textContent()).toContain('No attempt has been made.');
  });

  it('an unknown order id says there is no such order, with the API code', async () => {
    const page = await signIn(f.operatorKey);
    await page.goto(`${f.gateway.apiUrl}/console/#/orders/no-such-order`);
    await page.locator('#order-missing').waitFor();
    expect(await page.getByRole('alert').textContent()).toContain('E_ORDER_NOT_FOUND');
  });

  it('on a phone (390 px) both orders read without sideways scrolling, the evidence open', async () => {
    const page = await signIn(f.operatorKey, PHONE);
    for (const id of [retried, refused]) {
      await openOrder(page, id);
      for (const s of await page.locator('li.attempt summary').all()) await s.click();
      expect(await page.locator('li.attempt details[open]').count()).toBe(id === retried ? 2 : 0);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    }
    await page.screenshot({ path: join(ARTIFACTS, 'order-page-390.png'), fullPage: true });
  });

  it('the page follows the order live: when the order changes, the page shows it without being reloaded', async () => {
    const page = await signIn(f.operatorKey);
    // A reconnect not before an hour from now: it waits in the queue until someone acts on it.
    const r = await f.http('POST', '/v1/meters/OP-2/reconnect', { key: f.billingKey, headers: key(), body: { reason: 'payment', notBefore: new Date(Date.now() + 3_600_000).toISOString() } });
    expect(r.body.state).toBe('queued');
    await openOrder(page, r.body.id);
    await expect.poll(() => page.locator('#order-state').textContent()).toContain('queued');
    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    const cancel = await f.http('POST', `/v1/orders/${r.body.id}/cancel`, { key: f.operatorKey, headers: key(), body: { reason: 'payment reversed by the bank' } });
    expect(cancel.status).toBe(200);
    await expect.poll(() => page.locator('#order-state').textContent(), { timeout: 20_000 }).toContain('cancelled');
    expect(await page.getByRole('table', { name: /Every state change/ }).textContent()).toContain('payment reversed by the bank');
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
  });
});
