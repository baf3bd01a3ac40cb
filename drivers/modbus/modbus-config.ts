import { z } from 'zod';

/**
 * Connection settings of the Modbus links, by link name (the `link` a meter is registered on). An RTU link is
 * one serial bus (an RS-485 adapter, many unit ids); a TCP link is one Modbus TCP server or RTU gateway.
 * Defaults follow Modbus over Serial Line V1.02 §2.5.1 (19,200 baud, even parity, 8 data bits, 1 stop bit).
 */

const linkName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'letters, digits, ".", "_", ":" and "-"');

export const ModbusRtuLinkSchema = z
  .object({
    /** Serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/usb-FTDI_…-if00-port0 (stable across replugs). */
    path: z.string().min(1),
    baudRate: z.number().int().min(300).max(921_600).default(19_200),
    parity: z.enum(['none', 'even', 'odd']).default('even'),
    dataBits: z.union([z.literal(7), z.literal(8)]).default(8),
    stopBits: z.union([z.literal(1), z.literal(2)]).default(1),
    /** Re-sends of a request whose reply failed its CRC or was garbled (counted per bus). */
    frameRetries: z.number().int().min(0).max(10).default(2),
    /** Inter-frame silence override (ms); default t3.5 from the baud rate, 1.75 ms above 19,200 baud. */
    interFrameMs: z.number().min(0).max(1000).optional(),
    /** Silence that ends a reply that fits no frame (noise), ms. USB adapters deliver in bursts; keep ≥ 20. */
    noiseGapMs: z.number().int().min(1).max(1000).default(20),
    /** Delay between attempts to reopen a port that disappeared (ms). */
    reopenMs: z.number().int().min(10).max(60_000).default(500),
  })
  .strict();

export const ModbusTcpLinkSchema = z
  .object({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65_535).default(502),
    /** Transactions on the wire at once on this connection (MBAP transaction ids keep them apart). */
    maxConcurrent: z.number().int().min(1).max(64).default(4),
    /** Re-sends of a request whose reply was garbled. */
    frameRetries: z.number().int().min(0).max(10).default(1),
    /** Delay between reconnect attempts (ms). */
    reconnectMs: z.number().int().min(10).max(60_000).default(1000),
  })
  .strict();

export const ModbusLinksConfigSchema = z
  .object({
    rtu: z.record(linkName, ModbusRtuLinkSchema).default({}),
    tcp: z.record(linkName, ModbusTcpLinkSchema).default({}),
  })
  .strict()
  .refine((c) => Object.keys(c.rtu).every((name) => !(name in c.tcp)), { message: 'a link name is used for both an rtu and a tcp link' });

export type ModbusRtuLinkConfig = z.infer<typeof ModbusRtuLinkSchema>;
export type ModbusTcpLinkConfig = z.infer<typeof ModbusTcpLinkSchema>;
export type ModbusLinksConfig = z.infer<typeof ModbusLinksConfigSchema>;
/** What a caller writes (defaults may be left out). */
export type ModbusLinksConfigInput = z.input<typeof ModbusLinksConfigSchema>;
