import { afterAll, afterEach } from 'vitest';
import { checkedFetch, describeViolations, ServedContracts, type ResponseViolation } from './response-contract.js';

/**
 * Strict response validation for every test file (a vitest `setupFiles` entry): every answer a test gets from a local
 * Meterline gateway through `fetch` is checked against the OpenAPI document that gateway serves (status listed,
 * content type listed, JSON body valid against its schema), and the test that produced a violation fails with what
 * is wrong. The document is the contract billing teams generate clients from, so the suites prove it.
 *
 * METERLINE_STRICT_RESPONSES=0 turns the check off, for a local debugging run only (to see a test's own failure
 * first); CI never sets it.
 */
if (process.env.METERLINE_STRICT_RESPONSES !== '0') {
  const original = globalThis.fetch;
  const violations: ResponseViolation[] = [];
  globalThis.fetch = checkedFetch(original, new ServedContracts(original), (v) => violations.push(v));
  const failOnViolations = () => {
    if (violations.length === 0) return;
    const found = violations.splice(0);
    throw new Error(describeViolations(found));
  };
  afterEach(failOnViolations);
  // Answers seen in beforeAll/afterAll hooks fail the file.
  afterAll(failOnViolations);
}
