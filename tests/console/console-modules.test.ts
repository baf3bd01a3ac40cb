import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Every script the console serves parses as an ES module. One syntax error (a stray quote in a sentence) stops the
 * whole console from loading in the browser; this names the file and line at once, without a browser.
 */
const dir = fileURLToPath(new URL('../../src/console', import.meta.url));
const scripts = [...readdirSync(dir).filter((f) => f.endsWith('.js')), ...readdirSync(join(dir, 'pages')).filter((f) => f.endsWith('.js')).map((f) => join('pages', f))];
const tmp = mkdtempSync(join(tmpdir(), 'meterline-console-check-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('console scripts', () => {
  it('there are scripts to check', () => {
    expect(scripts).toContain('app.js');
    expect(scripts.some((s) => s.startsWith('pages'))).toBe(true);
  });
  it.each(scripts)('%s parses as an ES module', (script) => {
    const copy = join(tmp, `${script.replaceAll('/', '_')}.mjs`);
    copyFileSync(join(dir, script), copy);
    const r = spawnSync(process.execPath, ['--check', copy], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
