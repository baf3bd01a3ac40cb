import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

/**
 * `meterline completion bash|zsh`: the scripts parse in their shells, the bash one completes what a user types (run
 * in a real bash with COMP_WORDS as readline sets it), and both name every command the help lists and every option
 * the CLI parses, so the scripts cannot drift from the CLI.
 */
const dir = mkdtempSync(join(tmpdir(), 'ml-compl-'));
let bashScript: string;
let zshScript: string;
let help: string;

/** What the bash completion offers for the words typed so far (the last one being completed). */
function complete(...typed: string[]): string[] {
  const words = ['meterline', ...typed].map((w) => `'${w}'`).join(' ');
  const out = execFileSync('bash', ['-c', `source ${join(dir, 'meterline.bash')}; cd ${dir}; COMP_WORDS=(${words}); COMP_CWORD=${typed.length}; _meterline; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).sort();
}

beforeAll(async () => {
  const [b, z, h] = await Promise.all([runCli(['completion', 'bash'], {}), runCli(['completion', 'zsh'], {}), runCli(['--help'], {})]);
  expect([b.code, z.code, h.code]).toEqual([0, 0, 0]);
  [bashScript, zshScript, help] = [b.stdout, z.stdout, h.stdout];
  writeFileSync(join(dir, 'meterline.bash'), bashScript);
  writeFileSync(join(dir, '_meterline'), zshScript);
  writeFileSync(join(dir, 'payments.csv'), 'meterId\nM-1\n');
}, 30_000);

describe('meterline completion', () => {
  it('the bash script parses (bash -n) and completes commands, sub-commands, options and files, skipping option values', () => {
    execFileSync('bash', ['-n', join(dir, 'meterline.bash')]);
    expect(complete('pl')).toEqual(['plan']);
    expect(complete('work')).toEqual(['work-orders']);
    expect(complete('plan', '')).toEqual(['approve', 'cancel', 'draft', 'list', 'reject', 'show']);
    expect(complete('context', 'u')).toEqual(['use']);
    expect(complete('reconnect', 'M-1', '--wa')).toEqual(['--wait', '--wait-field', '--watch']);
    expect(complete('--reason', 'payment', 're')).toEqual(['reconnect']); // "payment" is --reason's value, not a command
    expect(complete('reconnect', '--reason', '')).toEqual([]);
    expect(complete('bulk', 'pay')).toEqual(['payments.csv']);
    expect(complete('plan', 'draft', '--file', 'pay')).toEqual(['payments.csv']);
  });

  it('the zsh script parses (zsh -n) and loads into compinit as the completion of meterline', () => {
    execFileSync('zsh', ['-n', join(dir, '_meterline')]);
    const out = execFileSync('zsh', ['-f', '-c', `autoload -U compinit; compinit -u -d ${join(dir, 'zcompdump')}; eval "$(cat ${join(dir, '_meterline')})"; print -r -- $_comps[meterline]`], { encoding: 'utf8' });
    expect(out.trim()).toBe('_meterline');
  });

  it('both scripts name every command of the help and every option the CLI parses; an unknown shell is a usage error', async () => {
    const commandsInHelp = new Set([...help.split('\nOptions\n')[0]!.matchAll(/^ {2}([a-z][a-z-]+)(?= |$)/gm)].map((m) => m[1]!));
    const optionsInHelp = new Set([...help.matchAll(/--([a-z][a-z-]+)/g)].map((m) => m[1]!));
    expect(commandsInHelp.size).toBeGreaterThan(15);
    for (const script of [bashScript, zshScript]) {
      for (const c of commandsInHelp) expect(script, c).toMatch(new RegExp(`[ "(]${c}[ )"]`));
      for (const o of optionsInHelp) expect(script, o).toContain(`--${o}`);
    }
    for (const c of /compgen -W "([^"]+)" -- "\$cur"\)\); return; fi\n\s+case/.exec(bashScript)![1]!.split(' ')) expect(commandsInHelp, c).toContain(c);
    const fish = await runCli(['completion', 'fish'], {});
    expect(fish.code).toBe(2);
    expect(fish.stderr).toContain('completion needs the shell: bash or zsh');
  });
});
