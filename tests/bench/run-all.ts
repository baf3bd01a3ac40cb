/**
 * `npm run bench`: every bench, one after another, each in its own process (so one's memory and timers do not
 * colour the next). A bench that fails does not stop the others; the exit code is non-zero if any failed,
 * and the summary at the end says which.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/project-root.js';

const dir = join(projectRoot(), 'dist', 'tests', 'bench');
const benches: { name: string; args: string[] }[] = [
  { name: 'reconnects, 10k (reconnect-bench)', args: [join(dir, 'reconnect-bench.js')] },
  { name: 'Modbus RTU bus (modbus-bus-bench)', args: [join(dir, 'modbus-bus-bench.js')] },
  { name: 'raw MQTT limit + gateway 100k + open loop + 10k statements pass + ratio and acceptance (gateway-100k-bench)', args: [join(dir, 'gateway-100k-bench.js')] },
  { name: 'memory per meter, 1M meters (memory-bench)', args: ['--expose-gc', join(dir, 'memory-bench.js')] },
  { name: 'API latency under load (api-latency-bench)', args: [join(dir, 'api-latency-bench.js')] },
  { name: 'crash recovery, 100k orders (recovery-bench)', args: [join(dir, 'recovery-bench.js')] },
  { name: 'payments, 50k (payments-bench)', args: [join(dir, 'payments-bench.js')] },
  { name: 'PostgreSQL, one instance vs two on one database, and vs SQLite, 20k (postgres-scale-bench)', args: [join(dir, 'postgres-scale-bench.js')] },
  { name: 'DLMS ciphered orders, HLS association, ciphering cost (dlms-bench)', args: [join(dir, 'dlms-bench.js')] },
];

const results: string[] = [];
let failed = 0;
for (const b of benches) {
  console.log(`\n=== ${b.name}`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, b.args, { stdio: 'inherit' });
  const s = ((performance.now() - t0) / 1000).toFixed(0);
  const ok = r.status === 0;
  if (!ok) failed++;
  results.push(`${ok ? 'ok    ' : 'FAILED'} ${b.name} (${s} s${ok ? '' : `, exit ${r.status ?? r.signal}`})`);
}
console.log(`\n=== summary\n${results.join('\n')}`);
process.exit(failed > 0 ? 1 : 0);
