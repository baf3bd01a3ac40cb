import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 30000,
    hookTimeout: 30000,
    pool: 'forks',
    // Every gateway answer a test sees through fetch is checked against the served OpenAPI document.
    setupFiles: ['tests/harness/strict-responses.ts'],
  },
});
