/** Plain-text output for terminals: aligned tables, order summaries, a progress bar. */

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

export const time = (iso: string | null | undefined): string => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function minutes(m: number | null): string {
  if (m === null) return '-';
  const a = Math.abs(m);
  const text = a >= 60 ? `${Math.floor(a / 60)}h${String(a % 60).padStart(2, '0')}m` : `${a}m`;
  return m < 0 ? `overdue ${text}` : text;
}

export interface OrderLike {
  id: string;
  meterId: string;
  action: string;
  /** For a limit order: the watts asked for, null for a removal. */
  limitW?: number | null;
  state: string;
  stateReason: string | null;
  reason: string;
  requestedBy: string;
  createdAt: string;
  deadline: string | null;
  attemptsUsed: number;
  result: { relay: string | null; verified: boolean };
  attempts?: { attempt: number; outcome: string | null; latencyMs: number | null; observedRelay: string | null; detail: string | null }[];
  events?: { at: string; from: string | null; to: string; reason: string | null }[];
}

/** What an order asks, in words: "disconnect", "reconnect", "limit to 1500 W", "remove the limit". */
export const orderWhat = (o: Pick<OrderLike, 'action' | 'limitW'>): string => (o.action !== 'limit' ? o.action : o.limitW == null ? 'remove the limit of' : `limit to ${o.limitW} W`);

export function orderText(o: OrderLike): string {
  const lines = [
    `order ${o.id}: ${orderWhat(o)} ${o.meterId} is ${o.state}${o.stateReason ? ` (${o.stateReason})` : ''}`,
    `  reason ${o.reason}, requested by ${o.requestedBy} at ${time(o.createdAt)}${o.deadline ? `, deadline ${time(o.deadline)}` : ''}`,
    `  relay read back: ${o.result.relay ?? '-'}${o.result.verified ? ' (verified)' : ''}; attempts ${o.attemptsUsed}`,
  ];
  for (const a of o.attempts ?? []) {
    lines.push(`  attempt ${a.attempt}: ${a.outcome ?? 'on the wire'}${a.latencyMs !== null ? ` ${a.latencyMs} ms` : ''}${a.observedRelay ? `, read back ${a.observedRelay}` : ''}${a.detail ? ` (${a.detail})` : ''}`);
  }
  if (o.events?.length) lines.push(`  events: ${o.events.map((e) => e.to).join(' → ')}`);
  return lines.join('\n');
}

/** "[#########.........]  45% 450/1000" */
export function bar(done: number, total: number, width = 30): string {
  const share = total === 0 ? 1 : done / total;
  const filled = Math.round(share * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(share * 100)).padStart(3)}% ${done}/${total}`;
}
