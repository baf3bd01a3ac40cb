import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DISCONNECT_REASON_ROLES } from '../../src/api/auth.js';
import { REASON_RULES } from '../../src/domain/policy/disconnect-gate.js';
import { DISCONNECT_REASONS } from '../../src/domain/switch-order.js';

/**
 * The README's reason × role × rule table ("Disconnect safety") says exactly what the code enforces: who may name
 * each disconnect reason (`DISCONNECT_REASON_ROLES`), whether it needs a reference, and whether the daily cap and the
 * windows apply (`REASON_RULES`).
 */
const rows = new Map(
  readFileSync('README.md', 'utf8')
    .split('\n')
    .filter((l) => /^\| `[a-z_]+` \| /.test(l))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()))
    .map((cells) => [cells[0]!.replaceAll('`', ''), cells] as const),
);

describe('README reason table', () => {
  it.each(DISCONNECT_REASONS)('%s: who may name it, its evidence, cap and windows as the code has them', (reason) => {
    const cells = rows.get(reason);
    expect(cells, `a row for ${reason}`).toBeDefined();
    const [, who, evidence, , , cap, windows] = cells!;
    const roles = DISCONNECT_REASON_ROLES[reason];
    expect(who!.split(' — ')[0]).toBe(roles.length === 0 ? 'nobody' : roles.join(', '));
    const rules = REASON_RULES[reason];
    if (rules.reference !== null) expect(evidence).toContain('`reference`');
    else expect(evidence).not.toContain('`reference`');
    expect(cap!.startsWith(rules.cap ? 'yes' : 'no')).toBe(true);
    expect(windows!.startsWith(rules.windows ? 'yes' : 'no')).toBe(true);
  });
});
