/**
 * The same end-to-end scenarios as `consumption-alerts.test.ts`, with the gateway on PostgreSQL (the machine's server,
 * DATABASE_URL or postgres://postgres@127.0.0.1:5432/test; a fresh schema per gateway, kept across its restart).
 */
process.env.METERLINE_TEST_STORE = 'postgres';
await import('./consumption-alerts.test.js');
