import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../control/clock.js';
import { MeterlineError } from '../errors.js';
import { AuditAnchorSchema, type AuditAnchor, type AuditHead } from '../store/audit-chain.js';

/**
 * Anchors: the audit chain's head (entries, head link, key id) written outside the database, at start, every
 * `everyMs` and at stop, as one JSON line appended to a file and/or one log line. A chain alone cannot show that its
 * tail was cut off; verifying against anchors does (`npm run audit:verify -- --anchor <file>`): the log must still
 * reach every anchor, with the anchor's head. Entries written after the latest anchor are not covered.
 */
export interface AuditAnchorOptions {
  head: () => Promise<AuditHead>;
  /** The file to append to; null: none. */
  file: string | null;
  /** The logger to write "audit anchor" lines to; null: none. */
  logger: Logger | null;
  /** Where failures to anchor are reported. */
  errors: Logger;
  /** Period; 0: at start and stop only. */
  everyMs: number;
  instance: string;
  clock: Clock;
}

export class AuditAnchors {
  private timer: NodeJS.Timeout | undefined;
  private last: Promise<unknown> = Promise.resolve();
  private newestAt: number | null = null;

  constructor(private readonly o: AuditAnchorOptions) {}

  /** Whether anchors go anywhere (a file or the log); without either, anchoring is off. */
  get enabled(): boolean {
    return this.o.file !== null || this.o.logger !== null;
  }

  /** Seconds since the newest anchor was written out; null when anchoring is off or none was written yet. */
  ageSeconds(): number | null {
    return !this.enabled || this.newestAt === null ? null : (this.o.clock.now() - this.newestAt) / 1000;
  }

  /** Take an anchor now and write it out. */
  async anchor(): Promise<AuditAnchor> {
    const head = await this.o.head();
    const anchor: AuditAnchor = { anchor: 'meterline-audit', at: new Date(this.o.clock.now()).toISOString(), instance: this.o.instance, entries: head.entries, head: head.head, keyId: head.keyId };
    if (this.o.file) {
      mkdirSync(dirname(this.o.file), { recursive: true });
      appendFileSync(this.o.file, JSON.stringify(anchor) + '\n');
    }
    this.o.logger?.info({ auditAnchor: anchor }, 'audit anchor');
    this.newestAt = this.o.clock.now();
    return anchor;
  }

  /** The first anchor now; then one every `everyMs`. */
  async start(): Promise<void> {
    await this.anchor();
    if (this.o.everyMs > 0) {
      this.timer = setInterval(() => {
        this.last = this.anchor().catch((err: unknown) => this.o.errors.error({ err }, 'could not write an audit anchor'));
      }, this.o.everyMs);
      this.timer.unref();
    }
  }

  /** A last anchor, covering everything written up to the stop. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.last;
    await this.anchor().catch((err: unknown) => this.o.errors.error({ err }, 'could not write the last audit anchor'));
  }
}

/** Every anchor in a file of anchor lines (blank lines skipped); a line that is not an anchor is refused, by number. */
export function readAuditAnchors(file: string): AuditAnchor[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new MeterlineError('E_AUDIT_ANCHORS_INVALID', `the anchor file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const anchors: AuditAnchor[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new MeterlineError('E_AUDIT_ANCHORS_INVALID', `${file} line ${i + 1} is not JSON: each line is one anchor as the gateway writes it`);
    }
    const anchor = AuditAnchorSchema.safeParse(parsed);
    if (!anchor.success) throw new MeterlineError('E_AUDIT_ANCHORS_INVALID', `${file} line ${i + 1} is not an audit anchor (${anchor.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')})`);
    anchors.push(anchor.data);
  });
  return anchors;
}

