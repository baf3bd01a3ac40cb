/**
 * Modbus RTU bus throughput: one simulated RS-485 bus at 9,600 baud, 8N1, with baud-rate pacing on (bytes
 * leave the simulator at 960 per second, a request occupies the line for its own bytes, slaves wait t3.5
 * before answering), many unit ids, read-state transactions with some relay commands among them, all through
 * the Modbus driver over a real pty. Prints transactions per second and the ratio to the line's theoretical
 * maximum for the same frames: Σ (request + reply bytes) × 10 bits / 9,600 + 2 × t3.5 per transaction.
 *
 * Build and run: `npm run build && node dist/tests/bench/modbus-bus-bench.js`.
 * Options (environment): BENCH_MODBUS_OPS (default 600 driver operations), BENCH_MODBUS_UNITS (default 30).
 */
import { join } from 'node:path';
import { createModbusDriver } from '../../drivers/modbus/index.js';
import { interFrameSilenceMs } from '../../drivers/modbus/rtu-frame.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { projectRoot } from '../../src/config/project-root.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import { removePtyDir, startPtyPair } from '../harness/pty-pair.js';

const OPS = Number(process.env.BENCH_MODBUS_OPS ?? 600);
const UNITS = Number(process.env.BENCH_MODBUS_UNITS ?? 30);
const BAUD = 9600;
const BITS_PER_CHAR = 10; // 8N1
const COMMAND_EVERY = 10; // one relay command per ten operations

async function main(): Promise<void> {
  const profiles = [...loadFirmwareProfiles(join(projectRoot(), 'firmware-profiles')).values()].filter((p): p is ModbusFirmwareProfile => p.protocol === 'modbus');
  const breaker = profiles.find((p) => p.relay.remoteReconnect === 'closes')!;
  const meter = profiles.find((p) => p.relay.remoteReconnect === 'arms')!;
  const units = Array.from({ length: UNITS }, (_, i) => i + 1);
  const profileOf = (u: number) => (u % 2 ? breaker : meter);

  const pty = await startPtyPair();
  const bus = new ModbusRtuBus({ path: pty.devicePath, baudRate: BAUD, parity: 'none', paced: true, devices: units.map((u) => ({ unitId: u, meterId: `BN-${u}`, profile: profileOf(u) })) });
  await bus.start();
  const driver = createModbusDriver({ links: { rtu: { bench: { path: pty.gatewayPath, baudRate: BAUD, parity: 'none', stopBits: 1 } } }, profiles });
  await driver.start();

  // Warm up (JIT, pty buffers), then count from zero.
  for (const u of units.slice(0, 3)) await driver.readRelay({ meterId: `BN-${u}`, profile: profileOf(u), link: 'bench', address: String(u) }, { correlationId: 'warm', timeoutMs: 1000 });
  const base = driver.linkStatus().bench!;

  let next = 0;
  let failures = 0;
  const started = performance.now();
  // One worker per unit keeps every unit id queued, as a busy control loop would.
  await Promise.all(
    units.map(async (u) => {
      const at = { meterId: `BN-${u}`, profile: profileOf(u), link: 'bench', address: String(u) };
      for (let op = next++; op < OPS; op = next++) {
        const opts = { correlationId: `bench:${op}`, timeoutMs: 1000 };
        const r = op % COMMAND_EVERY === 0 ? await driver.operateRelay(at, op % 20 === 0 ? 'disconnect' : 'reconnect', opts) : await driver.readRelay(at, opts);
        if (r.outcome !== 'ok') failures++;
      }
    }),
  );
  const wallMs = performance.now() - started;
  const s = driver.linkStatus().bench!;
  const tx = s.transactions - base.transactions;
  const bytes = s.bytesOut - base.bytesOut + (s.bytesIn - base.bytesIn);
  const charMs = (BITS_PER_CHAR * 1000) / BAUD;
  const theoreticalMs = bytes * charMs + tx * 2 * interFrameSilenceMs(BAUD, BITS_PER_CHAR);
  const txPerSec = (tx / wallMs) * 1000;
  const maxPerSec = (tx / theoreticalMs) * 1000;
  const ratio = txPerSec / maxPerSec;

  await driver.stop();
  await bus.stop();
  await pty.stop();
  removePtyDir(pty);

  console.log(`operations: ${OPS} (${OPS / COMMAND_EVERY} relay commands) on ${UNITS} unit ids; transactions: ${tx}; failures: ${failures}`);
  console.log(`bytes on the line: ${bytes} (${(bytes / tx).toFixed(1)} per transaction); wall ${wallMs.toFixed(0)} ms; line minimum ${theoreticalMs.toFixed(0)} ms`);
  console.log(`bus referee: ${bus.counters.violations} violation(s); CRC errors ${s.crcErrors}, retries ${s.retries}, timeouts ${s.timeouts}`);
  console.log(
    `| Modbus RTU, one bus, 9,600 baud 8N1 paced, ${UNITS} unit ids | ${tx} transactions | ${txPerSec.toFixed(1)} tx/s | line maximum ${maxPerSec.toFixed(1)} tx/s | ratio ${ratio.toFixed(3)} | ${bus.counters.violations} bus violations, ${failures} failures |`,
  );
  if (bus.counters.violations > 0 || failures > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
