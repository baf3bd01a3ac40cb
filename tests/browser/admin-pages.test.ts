import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium } from '../harness/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * The admin pages (alerts, circuit breakers, links, audit log, API keys) in Chromium against a real gateway, mosquitto
 * and a simulated fleet. The breaker and the alerts are made for real: meters whose relays stick fail their
 * disconnects until the success-rate monitor opens the breaker for their population.
 */
const CLOSES = 'acme-em340-fw2.4';
const ARTIFACTS = join(process.cwd(), 'tests', 'browser', 'artifacts');
const STUCK = ['STK-1', 'STK-2', 'STK-3', 'STK-4'];
const meters: TestMeter[] = [
  ...STUCK.map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'connected' as const, region: 'stuck', link: 'dc-stuck' })),
  { meterId: 'OK-1', profileId: CLOSES, initialRelay: 'connected', region: 'north' },
];
const DESK = { width: 1366, height: 860 };
const PHONE = { width: 390, height: 844 };

let f: GatewayFixture;
let browser: Browser;
const contexts: BrowserContext[] = [];
let n = 0;
const key = () => ({ 'idempotency-key': `admin-pages-${++n}` });
const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

/** Confirmation dialogs the test saw, in order (each is accepted, as a user clicking OK). */
const dialogs: string[] = [];
async function signIn(apiKey: string, viewport = DESK): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.accept();
  });
  await page.goto(`${f.gateway.apiUrl}/`);
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  return page;
}
async function open(page: Page, hash: string, heading: string): Promise<void> {
  await page.goto(`${f.gateway.apiUrl}/console/#${hash}`);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}
const scrollWidth = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth);
const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const base = loadConfig({});
  f = await startGatewayFixture(meters, {
    successRates: { ...base.successRates, windowMinutes: [5], minSamples: 4, breakerMinSamples: 4, evaluateEveryMs: 200 },
    // An RS-485 adapter that is not plugged in: a link that is down from the start, for the links page.
    modbus: { rtu: { 'bus-unplugged': { path: '/dev/ttyMeterlineNone7', baudRate: 9600, parity: 'even', dataBits: 8, stopBits: 1, frameRetries: 2, noiseGapMs: 20, reopenMs: 500 } }, tcp: {} },
  });
  browser = await launchChromium();
  // Disconnects that keep failing (the relays stick): the breaker for their population opens, and alerts are raised.
  for (const m of STUCK) f.fleet.meter(m).setFaults({ stuckRelay: true });
  for (const m of STUCK) expect((await f.http('POST', `/v1/meters/${m}/disconnect`, { headers: key(), body: { reason: 'customer_request', reference: `REQ-${m}` } })).status).toBe(202);
  await until('an open breaker', async () => (await f.http('GET', '/v1/stats/breakers')).body.items[0]);
  await until('two open alerts', async () => {
    const items = (await f.http('GET', '/v1/alerts?state=open')).body.items;
    return items.length >= 2 && items.some((a: any) => a.kind === 'alert.circuit_open') ? items : undefined;
  });
}, 120_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await f?.stop();
});

describe('admin pages', () => {
  it('alerts: a supervisor acknowledges the breaker alert and then clears it; the page says who did and when, in words', async () => {
    const alert = (await f.http('GET', '/v1/alerts?state=open')).body.items.find((a: any) => a.kind === 'alert.circuit_open');
    const page = await signIn(f.supervisorKey);
    await open(page, '/alerts', 'Alerts');
    const row = page.locator(`tr[data-alert="${alert.id}"]`);
    await expect.poll(() => row.textContent()).toMatch(/^open.*circuit breaker opened.*disconnect success .* below .*nobody yet/);
    await shot(page, 'alerts');
    await row.getByRole('button', { name: 'Acknowledge' }).click();
    await expect.poll(() => page.locator('#alert-result').textContent()).toBe(`Alert ${alert.id} (circuit breaker opened) is acknowledged.`);
    await expect.poll(() => row.textContent()).toMatch(/^acknowledged.*acknowledged by demo-supervisor, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    expect(await row.getByRole('button', { name: 'Acknowledge' }).count()).toBe(0);
    await row.getByRole('button', { name: 'Clear' }).click();
    await expect.poll(() => row.textContent()).toMatch(/^cleared.*acknowledged by demo-supervisor.*cleared by demo-supervisor.*over$/);
    expect((await f.http('GET', '/v1/alerts?state=cleared')).body.items.map((a: any) => a.id)).toContain(alert.id);

    // The state filter: only cleared alerts.
    await page.getByLabel('State').selectOption('cleared');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.getByRole('table', { name: /alert\(s\) cleared/ }).locator('tbody tr').count()).toBe(1);

    // An auditor may look but not act.
    const auditor = (await f.http('POST', '/v1/keys', { key: f.adminKey, headers: key(), body: { name: 'auditor-1', role: 'auditor' } })).body.key;
    const looking = await signIn(auditor);
    await open(looking, '/alerts', 'Alerts');
    await expect.poll(() => looking.locator(`tr[data-alert="${alert.id}"]`).textContent()).toContain('cleared');
    expect(await looking.getByRole('button', { name: /Acknowledge|Clear/ }).count()).toBe(0);
  });

  it('alerts at phone width: another alert acknowledged and cleared; the page does not scroll sideways', async () => {
    const alert = (await f.http('GET', '/v1/alerts?state=open')).body.items[0];
    const page = await signIn(f.supervisorKey, PHONE);
    await open(page, '/alerts', 'Alerts');
    const row = page.locator(`tr[data-alert="${alert.id}"]`);
    await row.getByRole('button', { name: 'Acknowledge' }).click();
    await expect.poll(() => row.locator('td[data-label="State"]').textContent()).toBe('acknowledged');
    await row.getByRole('button', { name: 'Clear' }).click();
    await expect.poll(() => row.locator('td[data-label="State"]').textContent()).toBe('cleared');
    expect(await row.locator('td[data-label="Handled"]').isVisible()).toBe(true);
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
  });

  it('breakers: a supervisor sees the open breaker, why and since when, and resets it after confirming; a billing key gets no Reset button', async () => {
    const [breaker] = (await f.http('GET', '/v1/stats/breakers')).body.items;
    const page = await signIn(f.supervisorKey);
    await open(page, '/breakers', 'Circuit breakers');
    const row = page.locator(`tr[data-breaker="${breaker.id}"]`);
    await expect.poll(() => row.textContent()).toMatch(new RegExp(`^open\\s*disconnects of (firmware profile|link|region) ${breaker.key}.*disconnect success \\d+(\\.\\d)?% .* below 50%.*open for`));
    await shot(page, 'breakers');
    const seen = dialogs.length;
    await row.getByRole('button', { name: 'Reset' }).click();
    await expect.poll(() => page.locator('#breaker-result').textContent()).toMatch(/^Breaker for .* reset by demo-supervisor; held disconnects resume\.$/);
    expect(dialogs[seen]).toMatch(/^Reset the disconnect breaker for .*\? Held disconnects .* resume at once/);
    expect((await f.http('GET', '/v1/stats/breakers?open=false')).body.items.find((b: any) => b.id === breaker.id).resetBy).toBe('demo-supervisor');
    await expect.poll(() => row.count()).toBe(0);
    await page.getByRole('link', { name: 'Show reset breakers too' }).click();
    await expect.poll(() => page.locator(`tr[data-breaker="${breaker.id}"]`).textContent()).toMatch(/^reset.*by demo-supervisor, /);
    await page.setViewportSize(PHONE);
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
    // A billing key may not reset breakers: the page offers no button.
    const billing = await signIn(f.billingKey);
    await open(billing, '/breakers?all=true', 'Circuit breakers');
    await billing.locator(`tr[data-breaker="${breaker.id}"]`).waitFor();
    expect(await billing.getByRole('button', { name: 'Reset' }).count()).toBe(0);
  });

  it('links: every link, the down one first with its error, at desk and at phone width', async () => {
    const page = await signIn(f.supervisorKey);
    await open(page, '/links', 'Links');
    const links = page.getByRole('table', { name: /link\(s\), down first/ });
    await expect.poll(() => links.locator('tbody tr').first().getAttribute('data-link')).toBe('bus-unplugged');
    await expect.poll(() => links.locator('tr[data-link="bus-unplugged"]').textContent()).toMatch(/modbus-rtu\s*down\s*since .*cannot open serial port \/dev\/ttyMeterlineNone7/);
    await expect.poll(() => links.locator(`tr[data-link="${f.broker.url}"]`).textContent()).toMatch(/mqtt\s*up\s*since/);
    expect(await page.getByRole('status').filter({ hasText: 'link(s) down' }).textContent()).toMatch(/^1 link\(s\) down/);
    await page.setViewportSize(PHONE);
    await expect.poll(() => links.locator('tr[data-link="bus-unplugged"] td[data-label="Counters"]').isVisible()).toBe(true);
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
  });

  it('audit log: a supervisor filters by action and actor, pages, verifies the chain and exports the entries as CSV', async () => {
    const page = await signIn(f.supervisorKey);
    await open(page, '/audit', 'Audit log');
    await page.getByLabel('Action').fill('alert.');
    await page.getByLabel('Actor (client id)').fill('demo-supervisor');
    await page.getByRole('button', { name: 'Filter', exact: true }).click();
    const entries = page.getByRole('table', { name: /entr(y|ies)/ });
    // Newest first: the second alert's clear and acknowledge, then the first's.
    await expect.poll(async () => (await entries.locator('td[data-label="Action"]').allTextContents()).join(' ')).toBe('alert.clear alert.acknowledge alert.clear alert.acknowledge');
    expect(new Set(await entries.locator('td[data-label="Actor"]').allTextContents())).toEqual(new Set(['demo-supervisor']));
    expect(page.url()).toContain('action=alert.');

    await page.getByRole('button', { name: 'Verify the chain' }).click();
    await expect.poll(() => page.locator('#verify-result').textContent()).toMatch(/^The chain is intact: \d+ entries verified, \d+ anchor\(s\) checked\.$/);
    await shot(page, 'audit');

    const download = page.waitForEvent('download');
    await page.getByRole('link', { name: 'Export CSV' }).click();
    const csv = readFileSync((await (await download).path())!, 'utf8').trimEnd().split('\n');
    expect(csv[0]).toBe('seq,at,actor,action,target,details,hash');
    expect(csv.slice(1).map((l) => l.split(',')[3])).toEqual(['alert.acknowledge', 'alert.clear', 'alert.acknowledge', 'alert.clear']);

    // A time range that ends before the alerts were handled shows none of them.
    await page.getByLabel('To', { exact: true }).fill('2020-01-01T00:00');
    await page.getByRole('button', { name: 'Filter', exact: true }).click();
    await expect.poll(() => entries.locator('td.empty').textContent()).toBe('No entries match.');

    // Paging: 50 entries a page, newest first; the next page starts below the last one shown.
    for (let i = 0; i < 55; i++) expect((await f.http('PUT', `/v1/meters/OK-1/flags`, { key: f.billingKey, headers: key(), body: { protectedMode: i % 2 === 0 } })).status).toBe(200);
    await open(page, '/audit?action=meter.', 'Audit log');
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Audit log' }).waitFor();
    const firstPage = (await entries.locator('td[data-label="Entry"]').allTextContents()).map(Number);
    expect(firstPage).toHaveLength(50);
    await page.getByRole('link', { name: 'Next page (older)' }).click();
    await expect.poll(async () => Number((await entries.locator('td[data-label="Entry"]').first().textContent()) ?? 0)).toBeLessThan(Math.min(...firstPage));

    await page.setViewportSize(PHONE);
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
  });

  it('API keys: an admin creates a key (its secret shown once, with a copy button), rotates it and revokes it; the revoked key gets 401', async () => {
    const page = await signIn(f.adminKey);
    await open(page, '/keys', 'API keys');
    await page.getByLabel('Name (a new client: a person or a system)').fill('crew-north-9');
    await page.getByLabel('Role').selectOption('field');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secretBox = page.getByRole('region', { name: /^New field key for crew-north-9/ });
    await secretBox.waitFor();
    expect(await secretBox.textContent()).toContain('This secret is shown once and will not be shown again.');
    const secret = await page.locator('#new-secret').inputValue();
    expect(secret.length).toBeGreaterThan(20);
    await secretBox.getByRole('button', { name: 'Copy the secret' }).click();
    await expect.poll(() => secretBox.getByRole('status').textContent()).toMatch(/^(Copied\.|Selected: press Ctrl\+C)/);
    expect((await f.http('GET', '/v1/whoami', { key: secret })).body).toMatchObject({ name: 'crew-north-9', role: 'field' });
    // The secret is in no storage the browser keeps.
    const stored = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }));
    expect(stored).not.toContain(secret);

    const keyId = (await f.http('GET', '/v1/keys', { key: f.adminKey })).body.items.find((k: any) => k.name === 'crew-north-9').id;
    const row = page.locator(`tr[data-key="${keyId}"]`);
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor();
    expect(await page.locator('#new-secret').count()).toBe(0); // shown once: gone after a reload
    await expect.poll(() => row.textContent()).toMatch(/crew-north-9\s*field\s*active.*by demo-admin\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/); // used once, by whoami
    await shot(page, 'keys');

    await row.getByRole('button', { name: 'Rotate' }).click();
    await page.getByRole('region', { name: `New secret for key ${keyId}` }).waitFor();
    const rotated = await page.locator('#new-secret').inputValue();
    expect(rotated).not.toBe(secret);
    expect((await f.http('GET', '/v1/whoami', { key: secret })).status).toBe(401);
    expect((await f.http('GET', '/v1/whoami', { key: rotated })).status).toBe(200);

    const seen = dialogs.length;
    await row.getByRole('button', { name: 'Revoke' }).click();
    await expect.poll(() => page.locator('#key-result').textContent()).toBe(`Key ${keyId} (field of crew-north-9) revoked.`);
    expect(dialogs[seen]).toMatch(/^Revoke key .* cannot be undone\.$/);
    await expect.poll(() => row.textContent()).toMatch(/revoked/);
    expect(await row.getByRole('button').count()).toBe(0);
    expect((await f.http('GET', '/v1/whoami', { key: rotated })).status).toBe(401);

    await page.setViewportSize(PHONE);
    expect(await scrollWidth(page)).toBeLessThanOrEqual(390);
  });

  it('at phone width (390 px) none of the admin pages scrolls sideways', async () => {
    const supervisor = await signIn(f.supervisorKey, PHONE);
    for (const [hash, heading] of [['/alerts', 'Alerts'], ['/breakers?all=true', 'Circuit breakers'], ['/links', 'Links'], ['/audit', 'Audit log']] as const) {
      await open(supervisor, hash, heading);
      await supervisor.locator('table caption').first().waitFor();
      expect(await scrollWidth(supervisor), hash).toBeLessThanOrEqual(390);
    }
    const admin = await signIn(f.adminKey, PHONE);
    await open(admin, '/keys', 'API keys');
    await admin.locator('tr[data-key]').first().waitFor();
    expect(await scrollWidth(admin)).toBeLessThanOrEqual(390);
  });
});
