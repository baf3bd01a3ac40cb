/** The same safety scenarios as `../rule-02-second-notice.test.ts`, with the gateway on PostgreSQL (a fresh schema per gateway). */
process.env.METERLINE_TEST_STORE = 'postgres';
await import('../rule-02-second-notice.test.js');
