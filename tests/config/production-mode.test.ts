import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load-config.js';

/** NODE_ENV=production (the Docker image) runs without the demo unless METERLINE_DEMO=1 asks for it; demo keys never. */
describe('production mode', () => {
  it('NODE_ENV=production: no demo keys, no simulated fleet, no demo payments, an external broker', () => {
    const c = loadConfig({ NODE_ENV: 'production' });
    expect(c.auth.demoKeys).toBe(false);
    expect(c.fleet.seed).toBeNull();
    expect(c.simulator.inProcess).toBe(false);
    expect(c.demo.reconnectEveryMs).toBe(0);
    // No simulated billing, no demo plans, no demo calendar: the configured policy (windows, 30-minute notice) holds.
    expect(c.demo).toMatchObject({ billing: false, planEveryMs: 0, policy: null });
    expect(c.policy.notice.secondNoticeMinutes).toBe(30);
    expect(c.mqtt.mode).toBe('external');
  });

  it('METERLINE_DEMO=1 asks for the demo explicitly, in production too', () => {
    const c = loadConfig({ NODE_ENV: 'production', METERLINE_DEMO: '1' });
    expect(c.auth.demoKeys).toBe(true);
    expect(c.simulator.inProcess).toBe(true);
    expect(c.fleet.seed).not.toBeNull();
  });

  it('demo keys turned on in production by a variable or a file are refused, naming where from', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', METERLINE__AUTH__DEMOKEYS: 'true' })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production', METERLINE__AUTH__DEMOKEYS: 'true' })).toThrow(
      'auth.demoKeys (from METERLINE__AUTH__DEMOKEYS): demo keys are refused with NODE_ENV=production; set METERLINE_DEMO=1 to run the demo',
    );
    const file = join(mkdtempSync(join(tmpdir(), 'ml-prod-')), 'gw.json');
    writeFileSync(file, JSON.stringify({ auth: { keys: [], demoKeys: true } }));
    expect(() => loadConfig({ NODE_ENV: 'production', METERLINE_CONFIG: file })).toThrow(`auth.demoKeys (from ${file})`);
  });

  it('outside production the defaults stay the demo', () => {
    expect(loadConfig({}).auth.demoKeys).toBe(true);
    expect(loadConfig({ NODE_ENV: 'development' }).simulator.inProcess).toBe(true);
  });
});
