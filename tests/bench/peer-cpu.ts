/**
 * CPU time of the bench's peer processes (issue 19, round 2): the simulator child, mosquitto, the raw loop's echo
 * responder, the open loop's submitter. On 2 cores they share the CPU with the gateway, so their µs per verified order
 * show how much of the machine they take from it. utime + stime of the whole process (all its threads) from
 * /proc/<pid>/stat, read before and after a run.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fmt } from './bench-common.js';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime in clock ticks from a /proc/<pid>/stat line ("pid (name) state …"; the name may hold spaces and parentheses). */
export function ticksOfStat(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) of proc(5); fields[0] is field 3.
  return Number(fields[11]) + Number(fields[12]);
}

/** CPU time (µs, user + system, all threads) process `pid` has used so far; NaN when it is gone or unreadable. */
export function processCpuUs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    return (ticksOfStat(readFileSync(`/proc/${pid}/stat`, 'utf8')) * 1e6) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** µs of CPU per order of each named peer process over a run: `start()` with the pids, `stop(orders)` after. */
export class PeerCpu {
  private readonly before = new Map<string, { pid: number | undefined; us: number }>();
  constructor(private readonly pids: Record<string, number | undefined>) {}

  start(): void {
    for (const [name, pid] of Object.entries(this.pids)) this.before.set(name, { pid, us: processCpuUs(pid) });
  }

  stop(orders: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, b] of this.before) out[name] = (processCpuUs(b.pid) - b.us) / orders;
    return out;
  }
}

/** "simulator 120.3 µs, mosquitto 80.1 µs" (NaN: the process could not be read). */
export function peersLine(peers: Record<string, number>): string {
  return Object.entries(peers)
    .map(([name, us]) => `${name} ${Number.isFinite(us) ? `${fmt(us, 1)} µs` : 'not measured'}`)
    .join(', ');
}
