import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PERMISSIONS, ROLES } from '../../src/api/auth.js';

/** The README's role matrix says exactly what `PERMISSIONS` enforces. */
describe('README role matrix', () => {
  it('each permission row ticks exactly the roles the code allows', () => {
    const rows = readFileSync('README.md', 'utf8')
      .split('\n')
      .filter((l) => /^\| `[^`]+` \| .* \| `[a-z]+:[a-z]+` \|/.test(l));
    expect(rows.length).toBeGreaterThanOrEqual(Object.keys(PERMISSIONS).length);
    for (const row of rows) {
      const cells = row.split('|').slice(1, -1).map((c) => c.trim());
      const permission = cells[2]!.replaceAll('`', '') as keyof typeof PERMISSIONS;
      const ticked = ROLES.filter((_, i) => cells[3 + i] === '✓');
      expect(ticked, `${permission}`).toEqual(ROLES.filter((r) => (PERMISSIONS[permission] as readonly string[]).includes(r)));
    }
  });
});
