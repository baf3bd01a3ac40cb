import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { METRICS_TABLE } from '../../src/integrations/metrics.js';

/**
 * What docs/monitoring ships is checked the way an operations team would load it: Prometheus's own promtool checks
 * the alert rules, runs their unit tests and checks the scrape example; the Grafana dashboard is provisioning-ready,
 * every panel queries something, and every query is PromQL that Prometheus parses. Every metric named in these files
 * is one the gateway exposes.
 */

const DIR = 'docs/monitoring';

/** Every metric the gateway exposes (the registry is checked against this table in tests/integrations/metrics.test.ts). */
const FINAL_METRIC_NAMES: readonly string[] = METRICS_TABLE.map((m) => m.name).filter((n) => n.startsWith('meterline_'));

/** The alert each brief item asks for. */
const ALERTS = [
  'MeterlineSuccessRatioLow',
  'MeterlineReconnectDeadlineNear',
  'MeterlineCircuitBreakerOpen',
  'MeterlineTimeSeriesPointsDropped',
  'MeterlineInstanceDown',
  'MeterlineNoSingletonDuty',
  'MeterlineLinkDown',
  'MeterlineJournalThreadRestarted',
];

const read = (file: string): string => readFileSync(join(DIR, file), 'utf8');

/** Runs promtool; on failure the assertion shows what promtool printed. */
function promtool(args: string[], cwd = DIR): { ok: boolean; output: string } {
  try {
    const out = execFileSync('promtool', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { ok: true, output: out };
  } catch (err) {
    const e = err as { code?: string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') return { ok: false, output: 'promtool is not installed: run bash tests/setup/test-deps.sh (Debian package prometheus)' };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** Metric names in a text, without the histogram series suffixes. */
function metricNames(text: string): string[] {
  const names = (text.match(/meterline_[a-z_]+/g) ?? []).map((n) => n.replace(/_(bucket|count|sum)$/, ''));
  return [...new Set(names)].sort();
}

interface Target {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: Target[];
}
interface Dashboard {
  id?: number | null;
  uid: string;
  title: string;
  schemaVersion: number;
  templating: { list: { type: string; name: string; query?: unknown }[] };
  panels: Panel[];
}

const dashboardText = read('grafana-dashboard.json');
const dashboard = JSON.parse(dashboardText) as Dashboard;
const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr ?? '' })));

/** A dashboard query as Prometheus would receive it, with Grafana's variables filled in. */
function asPrometheusQuery(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '2m')
    .replaceAll('$window', '15m')
    .replaceAll('$kind', 'attempt|final')
    .replaceAll('$instance', '.*')
    .replaceAll('$job', 'meterline');
}

describe('Prometheus alert rules (docs/monitoring/alert-rules.yml)', () => {
  it('promtool check rules accepts the rule file', () => {
    const r = promtool(['check', 'rules', 'alert-rules.yml']);
    expect(r.output, r.output).toContain(`SUCCESS: ${ALERTS.length} rules found`);
    expect(r.ok, r.output).toBe(true);
  });

  it('promtool test rules: every unit test passes', () => {
    const r = promtool(['test', 'rules', 'alert-rules.test.yml']);
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain('SUCCESS');
  });

  const rules = read('alert-rules.yml');
  const blocks = new Map(rules.split(/^\s*- alert: /m).slice(1).map((b) => [b.split('\n')[0]!.trim(), b] as const));
  const tests = read('alert-rules.test.yml');

  it('has the alerts of issue 18 and no others', () => {
    expect([...blocks.keys()].sort()).toEqual([...ALERTS].sort());
  });

  it.each(ALERTS)('%s waits (for), has a severity, and says what happened and what to do', (alert) => {
    const block = blocks.get(alert) ?? '';
    expect(block).toMatch(/^\s+for: \d+m$/m);
    expect(block).toMatch(/^\s+severity: (warning|critical)$/m);
    expect(block).toMatch(/^\s+summary: \S/m);
    expect(block).toMatch(/^\s+description: \S/m);
  });

  it.each(ALERTS)('%s has a unit test where it fires and one where it stays silent', (alert) => {
    const checks = tests.split(/^\s*- eval_time: /m).slice(1).filter((c) => c.includes(`alertname: ${alert}\n`));
    expect(checks.some((c) => /exp_alerts:\s*\n\s+- exp_labels:/.test(c)), 'a check where it fires').toBe(true);
    expect(checks.some((c) => /exp_alerts: \[\]/.test(c)), 'a check where it is silent').toBe(true);
  });
});

describe('Prometheus scrape example (docs/monitoring/prometheus.example.yml)', () => {
  const example = read('prometheus.example.yml');

  it('scrapes /metrics of job meterline with the bearer key from a file, and loads the alert rules', () => {
    expect(example).toMatch(/job_name: meterline$/m);
    expect(example).toMatch(/metrics_path: \/metrics$/m);
    expect(example).toMatch(/authorization:\n\s+type: Bearer\n\s+credentials_file: \/etc\/prometheus\/meterline\.key$/m);
    expect(example).toMatch(/rule_files:\n\s+- alert-rules\.yml$/m);
  });

  it('promtool check config accepts it, with its rule file beside it', () => {
    // promtool needs the key file to exist: a copy points at a made-up key in a temporary directory.
    const dir = mkdtempSync(join(tmpdir(), 'meterline-prometheus-'));
    const keyFile = join(dir, 'meterline.key');
    writeFileSync(keyFile, 'mk_example\n', { mode: 0o600 });
    writeFileSync(join(dir, 'prometheus.yml'), example.replaceAll('/etc/prometheus/meterline.key', keyFile));
    copyFileSync(join(DIR, 'alert-rules.yml'), join(dir, 'alert-rules.yml'));
    const r = promtool(['check', 'config', 'prometheus.yml'], dir);
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain('SUCCESS: 1 rule files found');
    expect(r.output).toContain(`SUCCESS: ${ALERTS.length} rules found`);
  });
});

describe('Grafana dashboard (docs/monitoring/grafana-dashboard.json)', () => {
  it('is provisioning-ready: a uid, a title, a schema version, no instance id, its data source from a variable', () => {
    expect(dashboard.uid).toBe('meterline-overview');
    expect(dashboard.title).toBe('Meterline');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.id ?? null).toBeNull();
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    // Every data source reference is the variable: nothing names one Grafana's data source.
    const uids = [...dashboardText.matchAll(/"uid": "([^"]*)"/g)].map((m) => m[1]);
    expect(uids.filter((u) => u !== dashboard.uid && u !== '${datasource}' && u !== '-- Grafana --')).toEqual([]);
  });

  it('every panel queries something', () => {
    expect(dashboard.panels.length).toBeGreaterThan(0);
    for (const p of dashboard.panels) {
      expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.expr?.trim(), p.title).toBeTruthy();
    }
  });

  it('every query is PromQL that Prometheus parses (checked by promtool as recording rules)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meterline-dashboard-'));
    const rules = queries.map((q, i) => `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(asPrometheusQuery(q.expr))}`);
    writeFileSync(join(dir, 'dashboard-queries.yml'), `groups:\n  - name: dashboard\n    rules:\n${rules.join('\n')}\n`);
    const r = promtool(['check', 'rules', 'dashboard-queries.yml'], dir);
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain(`SUCCESS: ${queries.length} rules found`);
  });

  // What issue 18 asks the dashboard to show, each as the query that shows it.
  it.each([
    ['orders finished per minute by state', /sum by \(state\) \(rate\(meterline_orders_finished_total\{.*\) \* 60/],
    ['success ratio by profile', /meterline_success_ratio\{[^}]*scope="profile"/],
    ['success ratio by link', /meterline_success_ratio\{[^}]*scope="link"/],
    ['success ratio by region', /meterline_success_ratio\{[^}]*scope="region"/],
    ['queue depth by state', /by \(state\) \(meterline_queue_depth\{/],
    ["the most urgent reconnect's time left in hours", /meterline_most_urgent_reconnect_remaining_seconds\{.*\/ 3600/],
    ['links up and down', /meterline_link_up\{/],
    ['the broker connection', /meterline_broker_connected\{/],
    ['attempt latency p50', /histogram_quantile\(0\.5, sum by \(protocol, le\) \(rate\(meterline_switch_attempt_duration_seconds_bucket/],
    ['attempt latency p95', /histogram_quantile\(0\.95, sum by \(protocol, le\) \(rate\(meterline_switch_attempt_duration_seconds_bucket/],
    ['attempt latency p99', /histogram_quantile\(0\.99, sum by \(protocol, le\) \(rate\(meterline_switch_attempt_duration_seconds_bucket/],
    ['HTTP p99 by route', /histogram_quantile\(0\.99, sum by \([^)]*route[^)]*\) \(rate\(meterline_http_request_duration_seconds_bucket/],
    ['time-series points dropped', /rate\(meterline_timeseries_dropped_points_total\{/],
    ['singleton duty', /meterline_singleton_duty_held\{/],
  ])('shows %s', (_what, query) => {
    expect(queries.some((q) => query.test(q.expr))).toBe(true);
  });

  it('draws the 95 % line on every success-ratio panel and the 2-hour threshold on the reconnect stat', () => {
    const ratioPanels = dashboard.panels.filter((p) => p.targets?.some((t) => t.expr?.includes('meterline_success_ratio')));
    expect(ratioPanels).toHaveLength(3);
    for (const p of ratioPanels as unknown as { title: string; fieldConfig: { defaults: { custom: { thresholdsStyle: { mode: string } }; thresholds: { steps: { value: number | null }[] } } } }[]) {
      expect(p.fieldConfig.defaults.custom.thresholdsStyle.mode, p.title).toBe('line');
      expect(p.fieldConfig.defaults.thresholds.steps.map((s) => s.value), p.title).toEqual([null, 0.95]);
    }
    const reconnect = dashboard.panels.find((p) => p.targets?.some((t) => t.expr?.includes('meterline_most_urgent_reconnect_remaining_seconds'))) as unknown as
      | { type: string; fieldConfig: { defaults: { unit: string; thresholds: { steps: { color: string; value: number | null }[] } } } }
      | undefined;
    expect(reconnect?.type).toBe('stat');
    expect(reconnect?.fieldConfig.defaults.unit).toBe('h');
    expect(reconnect?.fieldConfig.defaults.thresholds.steps).toEqual([
      { color: 'red', value: null },
      { color: 'green', value: 2 },
    ]);
  });
});

/**
 * Runs one dashboard query through promtool's unit tests: `series` (promtool notation, one value a minute) evaluated at
 * 5m must give exactly `expected` (labels in PromQL notation, value).
 */
function evaluatesTo(expr: string, series: Record<string, string>, expected: [labels: string, value: string][]): { ok: boolean; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'meterline-panel-'));
  const input = Object.entries(series).map(([name, values]) => `      - series: ${JSON.stringify(name)}\n        values: ${JSON.stringify(values)}`);
  const samples = expected.map(([labels, value]) => `          - labels: ${JSON.stringify(labels)}\n            value: ${value}`);
  writeFileSync(
    join(dir, 'panel.test.yml'),
    `rule_files: []\ntests:\n  - interval: 1m\n    input_series:\n${input.join('\n')}\n    promql_expr_test:\n      - expr: ${JSON.stringify(asPrometheusQuery(expr))}\n        eval_time: 5m\n        exp_samples:${samples.length === 0 ? ' []' : `\n${samples.join('\n')}`}\n`,
  );
  return promtool(['test', 'rules', 'panel.test.yml'], dir);
}

const queryOf = (panelTitle: string): string => queries.find((q) => q.panel === panelTitle)?.expr ?? '';

describe('Grafana dashboard panels on sample series (evaluated by promtool)', () => {
  it("the reconnect stat shows 1.5 h for 5,400 s left, and a finite value past its 'none open' mapping when none is open", () => {
    const expr = queryOf('Most urgent reconnect: time left');
    const mapped = (dashboard.panels.find((p) => p.title === 'Most urgent reconnect: time left') as unknown as { fieldConfig: { defaults: { mappings: { options: { from: number; result: { text: string } } }[] } } })
      .fieldConfig.defaults.mappings[0]!.options;
    expect(mapped.result.text).toBe('none open');
    const near = { 'meterline_most_urgent_reconnect_remaining_seconds{job="meterline",instance="a:8080"}': '5400x5', 'meterline_most_urgent_reconnect_remaining_seconds{job="meterline",instance="b:8080"}': '5400x5' };
    let r = evaluatesTo(expr, near, [['{}', '1.5']]);
    expect(r.ok, r.output).toBe(true);
    // +Inf (none open) is clamped to a finite number of hours that the mapping turns into "none open".
    const none = { 'meterline_most_urgent_reconnect_remaining_seconds{job="meterline",instance="a:8080"}': 'Inf Inf Inf Inf Inf Inf' };
    const hours = 1e7 / 3600;
    expect(hours).toBeGreaterThan(mapped.from);
    r = evaluatesTo(expr, none, [['{}', String(hours)]]);
    expect(r.ok, r.output).toBe(true);
  });

  it("a success-ratio panel shows the duty holder's ratios only, not another instance's older report", () => {
    const expr = queryOf('Success ratio by firmware profile');
    const labels = (instance: string, key: string) => `{job="meterline",instance="${instance}",scope="profile",key="${key}",action="reconnect",kind="final",window="15m"}`;
    const r = evaluatesTo(
      expr,
      {
        'meterline_singleton_duty_held{job="meterline",instance="a:8080"}': '1x5',
        'meterline_singleton_duty_held{job="meterline",instance="b:8080"}': '0x5',
        [`meterline_success_ratio${labels('a:8080', 'acme-v2')}`]: '0.9x5',
        [`meterline_success_ratio${labels('b:8080', 'acme-v2')}`]: '0.4x5',
      },
      [[`meterline_success_ratio${labels('a:8080', 'acme-v2')}`, '0.9']],
    );
    expect(r.ok, r.output).toBe(true);
  });
});

describe('metric names in docs/monitoring', () => {
  it.each(['grafana-dashboard.json', 'alert-rules.yml', 'alert-rules.test.yml', 'README.md'])('%s names only metrics the gateway exposes', (file) => {
    const unknown = metricNames(read(file)).filter((n) => !FINAL_METRIC_NAMES.includes(n));
    expect(unknown).toEqual([]);
  });
});
