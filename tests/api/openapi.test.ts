import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/** The served OpenAPI document is the API's documentation: every route with a body shows an example of it. */
let f: GatewayFixture;
beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'OA-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('OpenAPI document', () => {
  it('documents every /v1 route, and every request body carries an example', async () => {
    const spec = (await f.http('GET', '/openapi.json', { key: null })).body;
    const ops: [string, string, any][] = [];
    for (const [path, item] of Object.entries<any>(spec.paths)) for (const [method, op] of Object.entries<any>(item)) ops.push([method, path, op]);
    expect(ops.filter(([, p]) => p.startsWith('/v1/')).length).toBeGreaterThan(40);
    const missing = ops
      .filter(([, , op]) => op.requestBody)
      .filter(([, , op]) => {
        const media = op.requestBody.content?.['application/json'];
        return !(media?.example || (media?.examples && Object.keys(media.examples).length) || media?.schema?.examples?.length || media?.schema?.example);
      })
      .map(([m, p]) => `${m.toUpperCase()} ${p}`);
    expect(missing).toEqual([]);
    for (const [, , op] of ops) expect(op.summary ?? op.description, JSON.stringify(op).slice(0, 80)).toBeTruthy();
  });

  it('says what a billing receiver may rely on in `seq`: per client, from 1, no gaps (a gap means loss), at-least-once callbacks', async () => {
    const spec = (await f.http('GET', '/openapi.json', { key: null })).body;
    for (const path of ['/v1/changes', '/v1/callbacks/deliveries']) {
      const seq = spec.paths[path].get.responses['200'].content['application/json'].schema.properties.items.items.properties.seq;
      expect(seq).toMatchObject({ type: 'integer', minimum: 1 });
      for (const promise of ["this billing client's own feed", '1 for its first event', 'exactly one more', 'never skipped', 'a gap there means loss', 'at least once', 'drops a seq it already has']) {
        expect(seq.description, path).toContain(promise);
      }
    }
  });
});
