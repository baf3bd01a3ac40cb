import pino, { type Logger } from 'pino';
import type { GatewayConfig } from '../config/config-schema.js';
import { prettyDestination } from './pretty-log.js';

/**
 * The gateway's logger, on stdout. JSON for pipes, files and log shippers (one object a line, `jq` reads it); readable
 * lines when stdout is a terminal (`log.format: auto`, the default), or always/never with `pretty`/`json`. Levels are
 * words and times ISO 8601 (UTC) by default; `log.time: epoch` keeps pino's milliseconds for shippers that want them.
 */
export function gatewayLogger(config: Pick<GatewayConfig, 'instanceId' | 'log'>, out: NodeJS.WriteStream & { fd: number } = process.stdout): Logger {
  const options: pino.LoggerOptions = {
    level: config.log.level,
    base: { instance: config.instanceId },
    timestamp: config.log.time === 'iso' ? pino.stdTimeFunctions.isoTime : pino.stdTimeFunctions.epochTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const pretty = config.log.format === 'pretty' || (config.log.format === 'auto' && out.isTTY === true);
  if (!pretty) return pino(options, pino.destination(out.fd));
  // https://no-color.org: any non-empty NO_COLOR turns colours off.
  const colour = out.isTTY === true && !process.env.NO_COLOR;
  return pino(options, prettyDestination(out, colour));
}
