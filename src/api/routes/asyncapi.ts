import type { FastifyInstance } from 'fastify';
import { buildAsyncApiDocument } from '../asyncapi-document.js';
import type { ApiDeps } from '../deps.js';

/**
 * GET /asyncapi.json: the MQTT contract of this gateway's loaded MQTT profiles as an AsyncAPI 3.0.0 document, with
 * its broker and instance id. Open like /openapi.json (meter makers build firmware from it; it holds no secret:
 * the broker's credentials are dropped) and hidden from the OpenAPI document like it.
 */
export async function asyncApiRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  app.get('/asyncapi.json', { schema: { hide: true } }, async (_req, reply) => {
    const mqtt = deps.mqttContract?.();
    const doc = buildAsyncApiDocument({
      profiles: deps.profiles.values(),
      ...(mqtt ? { broker: { url: mqtt.brokerUrl, embedded: mqtt.embedded }, instanceId: mqtt.instanceId } : {}),
    });
    reply.type('application/json');
    return doc;
  });
}
