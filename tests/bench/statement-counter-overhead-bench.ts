/**
 * What the statement counter (src/store/statement-counter.ts) costs per statement (issue 19): the same SQLite
 * statements (an insert, a point read and an update, 100 of each per transaction, in memory) with and without
 * countSqliteStatements, CPU time per statement, the least of seven alternating trials of each (the least is the
 * one least disturbed by other work on the machine). Times the 100k bench's statements per order, it says what the
 * counter adds to the main thread's µs per order, which is why that bench counts statements in a separate pass.
 * `node dist/tests/bench/statement-counter-overhead-bench.js`.
 */
import Database from 'better-sqlite3';
import { countSqliteStatements, StatementCounter } from '../../src/store/statement-counter.js';
import { isMain } from './bench-common.js';

const TRANSACTIONS = 2000;
const PER_TRANSACTION = 300;

function trial(counted: boolean): number {
  const db = new Database(':memory:');
  if (counted) countSqliteStatements(db, new StatementCounter());
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  const ins = db.prepare('INSERT INTO t (id, v) VALUES (?, ?)');
  const sel = db.prepare('SELECT * FROM t WHERE id = ?');
  const upd = db.prepare('UPDATE t SET v = ? WHERE id = ?');
  const tx = db.transaction((base: number) => {
    for (let i = 0; i < PER_TRANSACTION / 3; i++) {
      ins.run(base + i, 'x');
      sel.get(base + i);
      upd.run('y', base + i);
    }
  });
  const start = process.cpuUsage();
  for (let k = 0; k < TRANSACTIONS; k++) tx(k * PER_TRANSACTION);
  const used = process.cpuUsage(start);
  db.close();
  return (used.user + used.system) / (TRANSACTIONS * PER_TRANSACTION);
}

export function counterOverheadUsPerStatement(): { plain: number; counted: number; overhead: number } {
  const plain: number[] = [];
  const counted: number[] = [];
  for (let i = 0; i < 7; i++) {
    plain.push(trial(false));
    counted.push(trial(true));
  }
  const p = Math.min(...plain);
  const c = Math.min(...counted);
  return { plain: p, counted: c, overhead: c - p };
}

if (isMain(import.meta.url)) {
  const r = counterOverheadUsPerStatement();
  const perOrder = Number(process.env.BENCH_STATEMENTS_PER_ORDER ?? 26);
  console.log(
    `statement counter: ${r.plain.toFixed(3)} µs CPU per statement without it, ${r.counted.toFixed(3)} µs with it: ` +
      `${r.overhead.toFixed(3)} µs per statement, ${(r.overhead * perOrder).toFixed(1)} µs per order at ${perOrder} statements per order ` +
      `(${((100 * r.overhead * perOrder) / 120).toFixed(1)} % of the 120 µs target)`,
  );
}
