import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { LinkHealth } from '../../../drivers/driver.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { ErrorView } from '../schemas.js';

const count = (what: string) => z.number().int().min(0).describe(what);

const LinkView = z.object({
  link: z.string().describe("The link's name: a meter's `link` (RTU bus, TCP gateway, DLMS port or TCP link), or the broker's address for the MQTT connection"),
  kind: z.enum(['mqtt', 'modbus-rtu', 'modbus-tcp', 'dlms-hdlc', 'dlms-tcp']),
  state: z.enum(['up', 'down']).describe('up: requests go on the wire; down: its orders wait without spending attempts'),
  since: z.string().describe('When the link entered this state (ISO 8601)'),
  lastError: z
    .object({ at: z.string(), message: z.string() })
    .nullable()
    .describe('The last failure on the link in words (a lost port, a refused connection, a timeout), kept after it recovers; null if none since start'),
  counters: z
    .object({
      crcErrors: count('Frames whose CRC (Modbus RTU) or HCS/FCS (DLMS HDLC) did not check: noise, a wrong baud rate or parity'),
      garbled: count('Answers that arrived but did not decode (wrong unit or function, bad length, broken framing, an unreadable reply)'),
      frameRetries: count('Frames sent again on the same request after a corrupted or lost answer'),
      timeouts: count('Requests that got no answer in time'),
      exceptions: z.record(z.string(), z.number().int().min(0)).describe('Refusals the devices answered, by code: Modbus exception code ("0x02"), DLMS result name ("temporary-failure")'),
      unknownCorrelationIds: count('Answers for no request waiting: MQTT replies with an unknown cid, Modbus TCP transaction ids, DLMS wrapper frames (late answers to requests given up on)'),
      reopens: count('Times the serial port was opened again after it was lost or failed to open'),
      reconnects: count('Times the connection (broker, TCP) was made again after it dropped'),
    })
    .describe('Since the gateway started; they only grow'),
});

export const LinksView = z.object({ items: z.array(LinkView) });

export function linkView(l: LinkHealth): z.infer<typeof LinkView> {
  return { ...l, since: new Date(l.since).toISOString(), lastError: l.lastError && { at: new Date(l.lastError.at).toISOString(), message: l.lastError.message } };
}

/** Each link's health (issue 16): the broker connection, the Modbus buses and gateways, the DLMS ports and TCP links. */
export async function linkRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/v1/links', {
    schema: {
      summary: 'Every link the gateway keeps (MQTT broker connection, Modbus RTU bus or TCP gateway, DLMS serial port or TCP link): its state and since when, its last error, its counters',
      tags: ['monitoring'],
      response: { 200: LinksView, 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async () => ({ items: (deps.links?.() ?? []).map(linkView) }),
  });
}
