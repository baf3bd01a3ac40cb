import type { FastifyInstance } from 'fastify';

/** Where a request's duration goes: `meterline_http_request_duration_seconds` (a prom-client Histogram fits). */
export interface HttpRequestObserver {
  observe(labels: { method: string; route: string; status: string }, seconds: number): void;
}

/** The route label of a request that matched no route (a 404 from the not-found handler). */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * Times every answered request by method, route template and status code. The route is the template the request
 * matched (`/v1/meters/:meterId/reconnect`), never the raw URL: a label per meter id or query string would grow
 * without bound. A request that matched no route is `unmatched`. Registered on the root instance before the
 * routes, so it covers all of them.
 */
export function registerHttpMetrics(app: FastifyInstance, observer: HttpRequestObserver | undefined): void {
  if (!observer) return;
  // A callback hook, not an async one: no promise per request (issue 19); a throw reaches fastify as a rejection would.
  app.addHook('onResponse', (req, reply, done) => {
    try {
      // No template: the not-found handler answered (no route for this method and path).
      const route = req.routeOptions.url ?? UNMATCHED_ROUTE;
      observer.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    } catch (err) {
      done(err as Error);
      return;
    }
    done();
  });
}
