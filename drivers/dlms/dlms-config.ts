import { z } from 'zod';

/**
 * Where the DLMS meters hang (serial ports by link name) and where each profile's password comes from.
 * Validated with zod at the edge; the gateway's config loader embeds this schema.
 *
 * @example
 *   { "ports": { "rs485-a": { "path": "/dev/ttyUSB0", "baudRate": 9600, "frameRetries": 3 } },
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

export const DlmsLinksConfigSchema = z
  .object({
    /** Serial ports by link name (the name meters are registered with). */
    ports: z.record(z.string().min(1), DlmsPortSchema),
    /** Password sources by firmware profile id. */
    passwords: z.record(z.string().min(1), DlmsPasswordSourceSchema).default({}),
    /**
     * The gateway's own system title (8 bytes, hex): the calling-AP-title of HLS and ciphered associations and
     * the fixed part of its GCM IVs. Give each gateway instance talking to the same meters its own.
     */
    clientSystemTitle: z.string().regex(/^[0-9a-fA-F]{16}$/, 'a system title: 16 hex digits (8 bytes)').optional(),
  })
  .strict();

export type DlmsPortConfig = z.infer<typeof DlmsPortSchema>;
export type DlmsLinksConfig = z.infer<typeof DlmsLinksConfigSchema>;
export type DlmsLinksConfigInput = z.input<typeof DlmsLinksConfigSchema>;
