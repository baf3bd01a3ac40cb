import { z } from 'zod';

/**
 * Where the DLMS meters hang (serial ports and TCP links by link name), where meters push to, and where each
 * profile's password comes from.
 * Validated with zod at the edge; the gateway's config loader embeds this schema.
 *
 * @example
 *   { "ports": { "rs485-a": { "path": "/dev/ttyUSB0", "baudRate": 9600, "frameRetries": 3 } },
 *     "tcp": { "dc-north": { "kind": "wrapper", "host": "10.4.0.17", "maxConnections": 2 },
 *              "gprs": { "kind": "wrapper", "maxConnections": 50 },
 *              "ts-7": { "kind": "hdlc", "host": "10.4.0.30", "port": 4001 } },
 *     "push": { "port": 4059 },
 *     "passwords": { "lgz-e570-dlms-mode2": { "env": "METERLINE_DLMS_PASSWORD_LGZ_E570" } } }
 */

/** "MTL" and five bytes: the default client system title (manufacturer-style prefix, serial 1). */
export const DEFAULT_CLIENT_SYSTEM_TITLE = '4d544c0000000001';

export const DlmsPortSchema = z
  .object({
    /** The serial device: /dev/ttyUSB0 (RS-485 adapter), /dev/ttyACM0 (optical probe), a pty in tests. */
    path: z.string().min(1),
    baudRate: z.number().int().min(300).max(921_600),
    parity: z.enum(['none', 'even', 'odd']).optional(),
    /** Frame-level repeats (RR poll or resend) before the driver only listens until the request deadline. */
    frameRetries: z.number().int().min(0).max(10),
    /** Silence kept on the bus between two conversations (RS-485 turnaround); default 0. */
    interFrameMs: z.number().int().min(0).max(10_000).optional(),
  })
  .strict();

export const DlmsPasswordSourceSchema = z
  .object({
    /** Environment variable holding the password (overrides the profile's passwordEnv). */
    env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/).optional(),
    /** The password itself (config files kept out of version control only). */
    value: z.string().min(1).optional(),
  })
  .strict();

/**
 * A TCP link (IEC 62056-47 / 62056-46 over TCP).
 *
 * `wrapper`: the TCP wrapper. With `host`, the link is one endpoint (a data concentrator, or a meter whose
 * logical devices are told apart by wPort): connections to it are kept open (up to `maxConnections`, one
 * association on each at a time), reconnected every `reconnectMs` after a drop, and the link is up while the
 * standing connection is. A meter's address is then its logical device (the server wPort, "1"), or empty for
 * the profile's `serverLogicalAddress`. Without `host`, every meter is its own endpoint: its address is
 * "host:port/logicalDevice" (port default 4059, logical device default the profile's), a connection is opened
 * per conversation, at most `maxConnections` at once, and an unreachable meter is that meter's failure
 * (link_error), not the link's.
 *
 * `hdlc`: HDLC over TCP, a terminal server or modem that tunnels the serial bus. `host` and `port` are
 * required; one standing connection (the bus is half-duplex: one conversation at a time), meters addressed by
 * HDLC server address as on a serial port.
 */
export const DlmsTcpLinkSchema = z
  .object({
    kind: z.enum(['wrapper', 'hdlc']),
    host: z.string().min(1).max(253).optional(),
    /** Default 4059 (the DLMS/COSEM port) for `wrapper`; required for `hdlc`. */
    port: z.number().int().min(1).max(65_535).optional(),
    /** Connections open at once on this link (wrapper); `hdlc` links have exactly one. Default 4 (wrapper). */
    maxConnections: z.number().int().min(1).max(1000).optional(),
    connectTimeoutMs: z.number().int().min(50).max(120_000).default(5000),
    /** Delay between reconnect attempts of a standing connection. */
    reconnectMs: z.number().int().min(10).max(600_000).default(2000),
    /** HDLC only: frame-level repeats, as on a serial port. Default 3. */
    frameRetries: z.number().int().min(0).max(10).optional(),
    /** HDLC only: silence kept between two conversations. */
    interFrameMs: z.number().int().min(0).max(10_000).optional(),
    /** Wrapper only: the largest APDU accepted from the meter (a header announcing more drops the connection). Default 65535. */
    maxApduBytes: z.number().int().min(64).max(65_535).optional(),
  })
  .strict()
  .superRefine((l, ctx) => {
    if (l.kind === 'hdlc') {
      if (l.host === undefined) ctx.addIssue({ code: 'custom', path: ['host'], message: 'an hdlc link needs the terminal server host' });
      if (l.port === undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'an hdlc link needs the terminal server port' });
      if (l.maxConnections !== undefined && l.maxConnections !== 1) ctx.addIssue({ code: 'custom', path: ['maxConnections'], message: 'an hdlc link tunnels one half-duplex bus: maxConnections must be 1' });
      if (l.maxApduBytes !== undefined) ctx.addIssue({ code: 'custom', path: ['maxApduBytes'], message: 'maxApduBytes is for wrapper links' });
    } else {
      if (l.frameRetries !== undefined || l.interFrameMs !== undefined) ctx.addIssue({ code: 'custom', path: ['frameRetries'], message: 'frameRetries and interFrameMs are for hdlc links' });
      if (l.host === undefined && l.port !== undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'a wrapper link without host takes each meter\'s host:port from its address' });
    }
  });

/**
 * The gateway's listener for meters' pushed notifications (Data-Notification, Event-Notification-Request in
 * wrapper frames). Bounded: connections, frame size, and a connection idle longer than `idleTimeoutMs` is closed.
 */
export const DlmsPushSchema = z
  .object({
    port: z.number().int().min(0).max(65_535),
    host: z.string().min(1).default('0.0.0.0'),
    maxConnections: z.number().int().min(1).max(100_000).default(1000),
    maxFrameBytes: z.number().int().min(64).max(65_535).default(2048),
    idleTimeoutMs: z.number().int().min(1000).max(86_400_000).default(300_000),
  })
  .strict();

export const DlmsLinksConfigSchema = z
  .object({
    /** Serial ports by link name (the name meters are registered with). */
    ports: z.record(z.string().min(1), DlmsPortSchema).default({}),
    /** TCP links by link name: the wrapper to meters and concentrators, or HDLC through a terminal server. */
    tcp: z.record(z.string().min(1), DlmsTcpLinkSchema).optional(),
    /** Where meters push their notifications to; absent = no listener. */
    push: DlmsPushSchema.optional(),
    /** Password sources by firmware profile id. */
    passwords: z.record(z.string().min(1), DlmsPasswordSourceSchema).default({}),
    /**
     * The gateway's own system title (8 bytes, hex): the calling-AP-title of HLS and ciphered associations and
     * the fixed part of its GCM IVs. Give each gateway instance talking to the same meters its own.
     */
    clientSystemTitle: z.string().regex(/^[0-9a-fA-F]{16}$/, 'a system title: 16 hex digits (8 bytes)').optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const name of Object.keys(c.tcp ?? {})) if (name in c.ports) ctx.addIssue({ code: 'custom', path: ['tcp', name], message: `link ${name} is also a serial port; a link name is one link` });
  });

export type DlmsPortConfig = z.infer<typeof DlmsPortSchema>;
export type DlmsTcpLinkConfig = z.infer<typeof DlmsTcpLinkSchema>;
export type DlmsPushConfig = z.infer<typeof DlmsPushSchema>;
export type DlmsLinksConfig = z.infer<typeof DlmsLinksConfigSchema>;
export type DlmsLinksConfigInput = z.input<typeof DlmsLinksConfigSchema>;
