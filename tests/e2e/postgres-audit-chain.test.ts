/**
 * The same audit-chain scenarios as `audit-chain.test.ts`, with the gateway on PostgreSQL (the machine's server,
 * DATABASE_URL or postgres://postgres@127.0.0.1:5432/test; a fresh schema per gateway).
 */
process.env.METERLINE_TEST_STORE = 'postgres';
await import('./audit-chain.test.js');
