import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PeerCpu, peersLine, processCpuUs, ticksOfStat } from './peer-cpu.js';

describe('peer processes CPU time', () => {
  it('reads utime + stime from a stat line whose name holds spaces and parentheses', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
    const stat = '4242 (node (sim) x) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 31 0 0 20 0 11 0';
    expect(ticksOfStat(stat)).toBe(281);
  });

  it("measures a busy child's CPU per order, and says when a process cannot be read", async () => {
    // The child burns 0.4 s of CPU (by its own count, however busy the machine), says so, then idles.
    const burn = 'const s = process.cpuUsage(); for (let u = process.cpuUsage(s); u.user + u.system < 400000; u = process.cpuUsage(s)); console.log("done"); setTimeout(() => {}, 5000)';
    const child = spawn(process.execPath, ['-e', burn], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const peers = new PeerCpu({ busy: child.pid, gone: 2 ** 22 + 1 });
      peers.start();
      await new Promise((r) => child.stdout!.once('data', r));
      const perOrder = peers.stop(1000); // 1,000 orders over ≥ 0.4 s of CPU, less what the child used before start(): ≥ 250 µs each
      expect(perOrder.busy).toBeGreaterThan(250);
      expect(perOrder.busy).toBeLessThan(2000);
      expect(Number.isNaN(perOrder.gone)).toBe(true);
      expect(peersLine(perOrder)).toMatch(/^busy [\d,.]+ µs, gone not measured$/);
    } finally {
      child.kill('SIGKILL');
    }
    expect(processCpuUs(undefined)).toBeNaN();
  });
});
