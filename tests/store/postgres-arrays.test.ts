import { createRequire } from 'node:module';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgArrayLiteral, withArrayLiterals } from '../../src/store/postgres-arrays.js';

/** pg's own writer of a parameter (what the store's literal replaces: it must be the same text). */
const pgUtils = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue(v: unknown): unknown };

const awkward = ['', 'NULL', 'null', 'a,b', '{x}', ' lead', 'trail ', 'quote"in', 'back\\slash', '\\"both\\"', '{"json":"v","n":1}', 'ünï ✓', 'tab\tnew\nline', '\\', 'emoji 😀', 'lone \ud800 surrogate', 'del \u007f', 'sep \u2028', '{"a":"x\\\\ny"}'];
const cases: Record<string, unknown[]> = {
  empty: [],
  ids: ['ord_1', 'ord_2', 'G-000001'],
  awkward,
  withNulls: ['a', null, undefined, 'b', null],
  onlyNull: [null],
  ints: [0, 1, -5, 1_764_000_000_000, Number.MAX_SAFE_INTEGER],
  doubles: [230.5, 0.1, 1e-7, -0, 1e21, 12345.678901234567],
  intsWithNull: [1, null, 3],
  booleans: [true, false, true],
  bigints: [1n, 9007199254740993n],
  mixed: ['x', 2, true, null, 'y"z'],
};

describe('pgArrayLiteral', () => {
  for (const [name, values] of Object.entries(cases)) {
    it(`writes the same literal as pg for ${name}`, () => {
      expect(pgArrayLiteral(values)).toBe(pgUtils.prepareValue(values));
    });
  }

  it('leaves to pg what it writes another way (nested arrays, buffers, dates, objects)', () => {
    expect(pgArrayLiteral([['a']])).toBeUndefined();
    expect(pgArrayLiteral([Buffer.from('a')])).toBeUndefined();
    expect(pgArrayLiteral([new Date(0)])).toBeUndefined();
    expect(pgArrayLiteral([{ a: 1 }])).toBeUndefined();
  });

  it('replaces only arrays it writes, in a copy', () => {
    const args = ['a', ['x', null], 5, [['nested']]];
    const out = withArrayLiterals(args);
    expect(out).toEqual(['a', '{"x",NULL}', 5, [['nested']]]);
    expect(args[1]).toEqual(['x', null]);
    const none = ['a', 1];
    expect(withArrayLiterals(none)).toBe(none);
  });
});

describe('pgArrayLiteral on the server', () => {
  const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const db = new pg.Client({ connectionString: DATABASE_URL });
  beforeAll(() => db.connect());
  afterAll(() => db.end());

  it('reads back every element as given', async () => {
    // A lone surrogate has no UTF-8 form: no client sends it intact (the literal is pg's own, compared above).
    const texts = [...awkward.filter((s) => !s.includes('\ud800')), null];
    const r = await db.query('SELECT $1::text[] AS t, $2::bigint[] AS b, $3::double precision[] AS d, $4::boolean[] AS f', [
      pgArrayLiteral(texts),
      pgArrayLiteral([1_764_000_000_000, null, -1]),
      pgArrayLiteral([230.5, 12345.678901234567, null]),
      pgArrayLiteral([true, false, null]),
    ]);
    const row = r.rows[0] as { t: (string | null)[]; b: (string | null)[]; d: (number | null)[]; f: (boolean | null)[] };
    expect(row.t).toEqual(texts);
    expect(row.b).toEqual(['1764000000000', null, '-1']);
    expect(row.d).toEqual([230.5, 12345.678901234567, null]);
    expect(row.f).toEqual([true, false, null]);
  });
});
