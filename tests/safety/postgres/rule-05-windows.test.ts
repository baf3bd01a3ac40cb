/** The same safety scenarios as `../rule-05-windows.test.ts`, with the gateway on PostgreSQL (a fresh schema per gateway). */
process.env.METERLINE_TEST_STORE = 'postgres';
await import('../rule-05-windows.test.js');
