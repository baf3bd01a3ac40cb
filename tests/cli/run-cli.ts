import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** The built `meterline` (node dist/src/cli/meterline.js, built by `npm run build`), run as a user runs it. */
export const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'meterline.js');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI with exactly `env` (plus PATH) and `stdin` piped in; resolves when it exits. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(stdin);
  });
}
