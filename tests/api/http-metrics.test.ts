import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { registerHttpMetrics, type HttpRequestObserver } from '../../src/api/http-metrics.js';

/** The request-duration hook labels by route template, never by the URL a client sent (the series must stay bounded). */
describe('HTTP request metrics', () => {
  it('labels each request with its method, route template and status; a request on no route is `unmatched`', async () => {
    const seen: { labels: { method: string; route: string; status: string }; seconds: number }[] = [];
    const observer: HttpRequestObserver = { observe: (labels, seconds) => seen.push({ labels, seconds }) };
    const app = Fastify();
    registerHttpMetrics(app, observer);
    app.get('/v1/meters/:meterId', async (req, reply) => ((req.params as { meterId: string }).meterId === 'NOPE' ? reply.code(404).send({ code: 'E_METER_NOT_FOUND' }) : { ok: true }));
    await app.register(async (scope) => {
      scope.post('/v1/meters/:meterId/reconnect', async (_req, reply) => reply.code(202).send({}));
    });
    for (const [method, url] of [
      ['GET', '/v1/meters/M-1?fields=all'],
      ['GET', '/v1/meters/NOPE'],
      ['POST', '/v1/meters/M-2/reconnect'],
      ['GET', '/v1/meters/M-2/reconnect'],
      ['GET', '/wp-login.php'],
    ] as const) {
      await app.inject({ method, url });
    }
    expect(seen.map((s) => s.labels)).toEqual([
      { method: 'GET', route: '/v1/meters/:meterId', status: '200' },
      { method: 'GET', route: '/v1/meters/:meterId', status: '404' }, // a route's own 404 keeps its template
      { method: 'POST', route: '/v1/meters/:meterId/reconnect', status: '202' },
      { method: 'GET', route: 'unmatched', status: '404' },
      { method: 'GET', route: 'unmatched', status: '404' },
    ]);
    for (const s of seen) expect(s.seconds).toBeGreaterThanOrEqual(0);
    expect(seen.every((s) => s.seconds < 5)).toBe(true); // seconds, not milliseconds
    await app.close();
  });
});
