import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { affinityOf, pinProcess } from './bench-common.js';

const children: ReturnType<typeof spawn>[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

describe('the bench pinning switch (taskset)', () => {
  it('pins a running process to the CPUs given, and leaves it alone when none are given', () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    const before = affinityOf(child.pid!);
    pinProcess(child.pid, undefined);
    expect(affinityOf(child.pid!)).toBe(before);
    pinProcess(child.pid, '0');
    expect(affinityOf(child.pid!)).toBe('0');
  });

  it('refuses a CPU the machine does not have, instead of running unpinned', () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    expect(() => pinProcess(child.pid, '4095')).toThrow();
  });
});
