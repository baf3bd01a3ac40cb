import type { ChildProcess } from 'node:child_process';

/** Stop a child process: `signal` (SIGTERM), then SIGKILL if it is still there after `killAfterMs`; resolves once it has exited. */
export async function stopChild(child: ChildProcess, killAfterMs = 5000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  await gone;
  clearTimeout(timer);
}
