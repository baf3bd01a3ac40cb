/** The same safety scenarios as `../rule-09-protected-mode.test.ts`, with the gateway on PostgreSQL (a fresh schema per gateway). */
process.env.METERLINE_TEST_STORE = 'postgres';
await import('../rule-09-protected-mode.test.js');
