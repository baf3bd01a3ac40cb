/** The same safety scenarios as `../escalated-disconnects.test.ts`, with the gateway on PostgreSQL (a fresh schema per gateway). */
process.env.METERLINE_TEST_STORE = 'postgres';
await import('../escalated-disconnects.test.js');
