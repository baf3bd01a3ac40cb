import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium } from '../harness/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type DemoRun } from '../harness/demo-run.js';

/**
 * The demo's disconnect plan in the console, in a real browser (Debian's chromium) against the demo as a user runs it
 * (`node dist/src/main.js`, demo configuration; only the pace is quickened): billing drafts a plan for arrears, the
 * supervisor approves it in the console and watches it run to `done`; a plan whose only order is refused is shown as
 * refused, not as a green "approved".
 */
const DAY = 86_400_000;
const ARTIFACTS = join(process.cwd(), 'tests', 'browser', 'artifacts');
let d: DemoRun;
let browser: Browser;
const contexts: BrowserContext[] = [];

async function signIn(apiKey: string, viewport = { width: 1366, height: 860 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${d.url}/`);
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  return page;
}

/** Billing drafts a plan for arrears over the next two hours (dates computed, as the README's tour does). */
async function draftPlan(meter: string, withNotice: boolean): Promise<string> {
  const now = Date.now();
  if (withNotice) {
    const notice = await d.api(d.keys.billing, 'POST', `/v1/meters/${meter}/notices`, { channel: 'letter', servedAt: new Date(now - 4 * DAY).toISOString(), delivery: 'delivered', receiptRef: `RM-${meter}` });
    expect(notice.status).toBe(201);
  }
  const draft = await d.api(d.keys.billing, 'POST', '/v1/plans', { reason: 'arrears', windowFrom: new Date(now).toISOString(), windowTo: new Date(now + 2 * 3_600_000).toISOString(), meters: [meter], note: `arrears ${meter}` });
  expect(draft.status).toBe(201);
  return draft.body.id as string;
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // A quiet demo: no plans or payments of its own, so the plans on the page are this test's.
  d = await startDemo('demo-browser', { reconnectEveryMs: 0, planEveryMs: 0 });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await d?.gw.stop();
});

describe('the demo plan in the console', () => {
  it('a supervisor approves a drafted plan and watches it run to done', async () => {
    const planId = await draftPlan('SIM-000004', true);
    const sup = await signIn(d.keys.supervisor);
    await sup.getByRole('link', { name: 'Plans' }).click();
    await sup.getByRole('heading', { level: 1, name: 'Disconnect plans' }).waitFor();
    await sup.getByRole('link', { name: planId }).click();
    await sup.getByRole('heading', { level: 1, name: `Plan ${planId}` }).waitFor();
    expect(await sup.locator('#plan-status').textContent()).toBe('draft');
    await sup.getByRole('button', { name: 'Approve' }).click();
    await expect.poll(() => sup.locator('#plan-status').textContent()).toBe('approved');
    // The page refreshes itself: the pre-disconnect notice, the payment re-check (still unpaid) and the command.
    await expect.poll(() => sup.locator('#plan-outcome').textContent(), { timeout: 60_000 }).toBe('approved · 1 of 1 done');
    expect(await sup.locator('#plan-outcome .badge').getAttribute('class')).toContain('b-done');
    expect(await sup.getByRole('table', { name: 'Per meter' }).textContent()).toMatch(/SIM-000004done/);
    expect(await sup.getByText('1 of 1 meters finished.').count()).toBe(1);
    await sup.screenshot({ path: join(ARTIFACTS, 'demo-plan.png'), fullPage: false });
  }, 120_000);

  it('a plan whose only order was refused is shown refused on the plans list, not a green approved', async () => {
    // No notice was served for this meter (rule 1): the plan's order is refused.
    const planId = await draftPlan('SIM-000005', false);
    expect((await d.api(d.keys.supervisor, 'POST', `/v1/plans/${planId}/approve`)).status).toBe(200);
    await expect.poll(async () => (await d.api(d.keys.operator, 'GET', `/v1/plans/${planId}`)).body.items[0].state, { timeout: 30_000 }).toBe('refused');
    const sup = await signIn(d.keys.supervisor);
    await sup.getByRole('link', { name: 'Plans' }).click();
    const row = sup.getByRole('table', { name: /plan\(s\)/ }).locator('tr', { has: sup.getByRole('link', { name: planId }) });
    await expect.poll(() => row.locator('.badge').textContent()).toBe('approved · 1 of 1 refused');
    expect(await row.locator('.badge').getAttribute('class')).toContain('b-refused');
  }, 60_000);
});
