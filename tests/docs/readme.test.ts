import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PERMISSIONS } from '../../src/api/auth.js';
import { ERRORS } from '../../src/errors.js';
import { METRICS_TABLE } from '../../src/integrations/metrics.js';

/** The README is where a utility engineer looks: it must name every metric and every permission the code has. */
const readme = readFileSync('README.md', 'utf8');

describe('README stays in step with the code', () => {
  it('lists every metric', () => {
    for (const m of METRICS_TABLE) expect(readme, m.name).toContain(`\`${m.name}\``);
  });
  it('lists every permission in the role matrix', () => {
    for (const p of Object.keys(PERMISSIONS)) expect(readme, p).toContain(`\`${p}\``);
  });
  it('names the errors a disconnect can be refused or held with', () => {
    for (const code of Object.keys(ERRORS).filter((c) => /NOTICE|PLAN_REQUIRED|PROTECTED|DAILY_CAP|OUTSIDE_WINDOW|CIRCUIT|PAID|LIMIT_FIRST|PREPAYMENT/.test(c))) {
      expect(readme, code).toContain(code);
    }
  });
});
