import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { MAIN } from '../harness/fault-run.js';
import { prepareDemoDir, runGateway, type GatewayChild } from '../harness/gateway-child.js';
import { eventually } from '../harness/startup-run.js';
import { prettyLine } from '../../src/log/pretty-log.js';

/**
 * The gateway's log as an operator meets it: JSON on a pipe (every stdout line parses, `jq` never stops), readable
 * lines on a terminal, ISO times and level words, and the start-up banner on stderr, never between the JSON lines.
 */
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const running: GatewayChild[] = [];

afterAll(async () => {
  await Promise.all(running.map((g) => g.stop()));
});

describe('the gateway log', () => {
  it('on a pipe: every stdout line is JSON with an ISO time and a level word; the banner is on stderr', async () => {
    const demo = await prepareDemoDir('log-pipe');
    const gw = runGateway({ configFile: demo.configFile });
    running.push(gw);
    await gw.started();
    expect(await gw.stop()).toEqual({ code: 0, signal: null });

    expect(gw.stderr).toContain(`Meterline gateway "log-pipe" is running`);
    expect(gw.stdout).not.toContain('is running');
    const lines = gw.stdout.split('\n').filter((l) => l !== '');
    // At least the start (key master) and the drain on SIGTERM.
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) {
      const rec = JSON.parse(line) as { time: unknown; level: unknown; msg: unknown; instance: unknown };
      expect(rec.time, line).toMatch(ISO);
      expect(['trace', 'debug', 'info', 'warn', 'error', 'fatal'], line).toContain(rec.level);
      expect(rec.instance).toBe('log-pipe');
    }
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('stopped; orders not yet started stay queued for the next start');
  });

  it('log.time epoch keeps milliseconds since 1970 for shippers that want them', async () => {
    const demo = await prepareDemoDir('log-epoch', { log: { level: 'info', time: 'epoch' } });
    const gw = runGateway({ configFile: demo.configFile });
    running.push(gw);
    await gw.started();
    await gw.stop();
    const first = JSON.parse(gw.stdout.split('\n')[0]!) as { time: unknown; level: unknown };
    expect(typeof first.time).toBe('number');
    expect(Math.abs((first.time as number) - Date.now())).toBeLessThan(10 * 60_000);
    expect(first.level).toBe('info');
  });

  it('on a terminal: readable lines (time, LEVEL, message, key=value), no JSON', async () => {
    const demo = await prepareDemoDir('log-tty');
    // util-linux `script` gives the gateway a pseudo-terminal for stdout and stderr, as a shell window does.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('METERLINE') && k !== 'DATABASE_URL'));
    const child = spawn('script', ['-qfec', `${process.execPath} ${MAIN}`, '/dev/null'], {
      env: { ...env, METERLINE_CONFIG: demo.configFile, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await eventually('the banner on the terminal', async () => (out.includes('is running') ? true : undefined), 60_000);
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    }
    const lines = out.replaceAll('\r', '').split('\n');
    const logLines = lines.filter((l) => /^\d{4}-\d{2}-\d{2}T[\d:.]+Z (INFO |WARN |DEBUG|ERROR)/.test(l));
    expect(logLines.length, out).toBeGreaterThanOrEqual(1);
    expect(logLines.join('\n')).toMatch(/ INFO  meter keys: .* keyMasterId=null/);
    expect(lines.filter((l) => l.startsWith('{'))).toEqual([]);
  });
});

describe('the readable line', () => {
  it('shows time, level, message and fields; quotes values with spaces; leaves out the instance', () => {
    const line = prettyLine(JSON.stringify({ level: 'warn', time: '2026-11-28T02:14:21.123Z', instance: 'gw1', msg: 'attempt failed', meterId: 'M-17', attempt: 2, reason: 'no reply', detail: { a: 1 } }), false);
    expect(line).toBe('2026-11-28T02:14:21.123Z WARN  attempt failed meterId=M-17 attempt=2 reason="no reply" detail={"a":1}');
  });

  it('writes an epoch time as ISO, an error with its stack below, and passes a non-JSON line through', () => {
    const line = prettyLine(JSON.stringify({ level: 'error', time: 0, msg: 'demo payment failed', err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at x (y.js:1:1)' } }), false);
    expect(line).toBe('1970-01-01T00:00:00.000Z ERROR demo payment failed\n    Error: boom\n        at x (y.js:1:1)');
    expect(prettyLine('not json', false)).toBe('not json');
  });

  it('colours the level only when asked', () => {
    expect(prettyLine(JSON.stringify({ level: 'info', time: 0, msg: 'm' }), true)).toContain('\x1b[32mINFO \x1b[0m');
  });
});
