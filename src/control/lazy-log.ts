import type { Logger } from 'pino';

/** The logging an attempt does: a line at a level, with its fields. A pino Logger is one. */
export interface LineLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  isLevelEnabled(level: string): boolean;
}

/**
 * `parent.child(bindings)`, made on the first line at a level the parent writes. An attempt that logs nothing (the
 * common case at level warn: a verified order) makes no child: pino's child() per attempt was main-thread work per
 * order (issue 19). The lines written are the same as the child's.
 */
export class LazyChild implements LineLog {
  private child: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Record<string, unknown>,
  ) {}

  private get(): Logger {
    return (this.child ??= this.parent.child(this.bindings));
  }

  isLevelEnabled(level: string): boolean {
    return this.parent.isLevelEnabled(level);
  }

  debug(obj: object, msg?: string): void {
    if (this.parent.isLevelEnabled('debug')) this.get().debug(obj, msg);
  }

  info(obj: object, msg?: string): void {
    if (this.parent.isLevelEnabled('info')) this.get().info(obj, msg);
  }

  warn(obj: object, msg?: string): void {
    if (this.parent.isLevelEnabled('warn')) this.get().warn(obj, msg);
  }

  error(obj: object, msg?: string): void {
    if (this.parent.isLevelEnabled('error')) this.get().error(obj, msg);
  }
}
