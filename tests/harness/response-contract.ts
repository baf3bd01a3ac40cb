import { createHash } from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

/**
 * Checks a gateway's HTTP answers against the OpenAPI document it serves, the way a billing team's validating proxy
 * does: the status must be listed for the operation, the content type must be one the status lists, and a JSON body
 * must validate against its schema (ajv, strict, all errors, formats). A response whose path is not in the document
 * (console files, /docs, /openapi.json itself) is not checked.
 */

type Json = Record<string, any>;
type FetchFn = typeof globalThis.fetch;

export interface ResponseViolation {
  method: string;
  path: string;
  status: number;
  problems: string[];
  /** The start of the body, when it was read. */
  excerpt: string;
}

const addFormats = addFormatsModule as unknown as (ajv: Ajv | Ajv2020) => void;
const DOC_ID = 'openapi-document';
/**
 * Keywords OpenAPI puts into schemas that are annotations, not assertions; and the document's own fields, because the
 * whole document is added as the schema `$ref`s resolve in (ajv reads its root as a schema).
 */
const OPENAPI_ANNOTATIONS = ['example', 'xml', 'externalDocs', 'openapi', 'info', 'servers', 'paths', 'webhooks', 'components', 'security', 'tags', 'jsonSchemaDialect'];

interface Operation {
  template: string;
  segments: string[];
  literals: number;
  pointer: string;
  op: Json;
}

/** One served document, compiled once: its operations by method and the validators of their response bodies. */
export class OpenApiContract {
  private readonly ajv: Ajv | Ajv2020;
  private readonly operations = new Map<string, Operation[]>();
  private readonly validators = new Map<string, ValidateFunction | string>();

  constructor(readonly doc: Json) {
    const options = { strict: true, allowUnionTypes: true, allErrors: true, validateSchema: false } as const;
    // 3.1 schemas are JSON Schema 2020-12; 3.0 schemas are the draft-07-like dialect with `nullable`, which ajv reads.
    this.ajv = String(doc.openapi).startsWith('3.1') ? new Ajv2020(options) : new Ajv(options);
    addFormats(this.ajv);
    for (const k of OPENAPI_ANNOTATIONS) if (!this.ajv.getKeyword(k)) this.ajv.addKeyword(k);
    this.ajv.addSchema(doc, DOC_ID);
    for (const [template, item] of Object.entries<Json>(doc.paths ?? {})) {
      const segments = template.split('/');
      for (const [method, op] of Object.entries<Json>(item)) {
        if (typeof op !== 'object' || op === null || !('responses' in op)) continue;
        const key = method.toUpperCase();
        const list = this.operations.get(key) ?? [];
        list.push({ template, segments, literals: segments.filter((s) => !isParam(s)).length, pointer: `/paths/${escapePointer(template)}/${method}`, op });
        this.operations.set(key, list);
      }
    }
    // A literal segment wins over a parameter, as in the server's router (/v1/orders/export before /v1/orders/{orderId}).
    for (const list of this.operations.values()) list.sort((a, b) => b.literals - a.literals);
  }

  /** The documented operation serving `method` on `pathname`, or undefined when the document does not have it. */
  operation(method: string, pathname: string): Operation | undefined {
    const parts = pathname.split('/');
    return this.operations.get(method.toUpperCase())?.find((o) => o.segments.length === parts.length && o.segments.every((s, i) => (isParam(s) ? parts[i] !== '' : s === parts[i])));
  }

  /** What is wrong with this answer, or [] when nothing is (also when the path is not documented). `body` is read only for JSON. */
  async problems(method: string, pathname: string, res: Response): Promise<{ problems: string[]; excerpt: string }> {
    const found = this.operation(method, pathname);
    if (!found) return { problems: [], excerpt: '' };
    const responses: Json = found.op.responses ?? {};
    const statusKey = [String(res.status), `${String(res.status)[0]}XX`, 'default'].find((k) => k in responses);
    if (statusKey === undefined) {
      const excerpt = await readExcerpt(res);
      return { problems: [`status ${res.status} is not documented for ${method} ${found.template} (documented: ${Object.keys(responses).join(', ')})`], excerpt };
    }
    const content: Json = responses[statusKey].content ?? {};
    const mediaType = baseType(res.headers.get('content-type'));
    const listed = Object.keys(content);
    if (method.toUpperCase() === 'HEAD' || res.status === 204 || res.status === 304) return { problems: [], excerpt: '' };
    if (listed.length === 0) {
      const text = await res.clone().text();
      return text.length === 0 ? { problems: [], excerpt: '' } : { problems: [`status ${res.status} documents no body, but one came (${mediaType ?? 'no content type'})`], excerpt: text.slice(0, 300) };
    }
    const media = listed.find((m) => mediaMatches(m, mediaType));
    if (media === undefined) {
      return { problems: [`content type ${mediaType ?? '(none)'} is not documented for status ${res.status} (documented: ${listed.join(', ')})`], excerpt: isStream(mediaType) ? '' : await readExcerpt(res) };
    }
    if (!isJson(mediaType)) return { problems: [], excerpt: '' }; // streams are not read (they do not end); CSV, text: the content type only
    const text = await res.clone().text();
    const excerpt = text.slice(0, 300);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { problems: [`the body is not JSON although the content type is ${mediaType}`], excerpt };
    }
    if (content[media].schema === undefined) return { problems: [], excerpt };
    const validate = this.validator(`${found.pointer}/responses/${escapePointer(statusKey)}/content/${escapePointer(media)}/schema`);
    if (typeof validate === 'string') return { problems: [`the documented schema does not compile under strict ajv: ${validate}`], excerpt };
    if (validate(body)) return { problems: [], excerpt };
    return {
      problems: (validate.errors ?? []).slice(0, 10).map((e) => `body${e.instancePath.replaceAll('/', '.')} ${e.message ?? 'is not valid'}${e.keyword === 'enum' ? ` (${JSON.stringify(e.params.allowedValues)}; got ${JSON.stringify(valueAt(body, e.instancePath))})` : ''}${e.keyword === 'additionalProperties' ? ` (${e.params.additionalProperty})` : ''}`),
      excerpt,
    };
  }

  private validator(pointer: string): ValidateFunction | string {
    let v = this.validators.get(pointer);
    if (v === undefined) {
      try {
        v = this.ajv.compile({ $ref: `${DOC_ID}#${pointer}` });
      } catch (e) {
        v = (e as Error).message;
      }
      this.validators.set(pointer, v);
    }
    return v;
  }
}

/** Is this served document a Meterline gateway's (and not some other local server's)? */
export const isMeterlineDocument = (doc: unknown): doc is Json =>
  typeof doc === 'object' && doc !== null && typeof (doc as Json).openapi === 'string' && /^Meterline/.test(String((doc as Json).info?.title ?? ''));

/**
 * The documents of the local servers a process talks to, fetched once per origin with the fetch that is not wrapped.
 * A server whose /openapi.json is not a Meterline document is not a gateway (null). When the document cannot be
 * fetched (the gateway refuses it, or has just stopped) the last one this process fetched stands in.
 */
export class ServedContracts {
  private readonly byOrigin = new Map<string, Promise<OpenApiContract | null>>();
  private readonly byHash = new Map<string, OpenApiContract>();
  private last: OpenApiContract | null = null;

  constructor(
    private readonly fetchDocument: FetchFn,
    private readonly accepts: (doc: unknown) => boolean = isMeterlineDocument,
  ) {}

  for(origin: string): Promise<OpenApiContract | null> {
    let p = this.byOrigin.get(origin);
    if (!p) {
      p = this.load(origin);
      this.byOrigin.set(origin, p);
    }
    return p;
  }

  private async load(origin: string): Promise<OpenApiContract | null> {
    let res: Response;
    try {
      res = await this.fetchDocument(`${origin}/openapi.json`, { signal: AbortSignal.timeout(10_000) });
    } catch {
      return this.last;
    }
    if (res.status === 404) return null;
    if (!res.ok) return this.last;
    const text = await res.text();
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return null;
    }
    if (!this.accepts(doc)) return null;
    const hash = createHash('sha256').update(text).digest('hex');
    let contract = this.byHash.get(hash);
    if (!contract) {
      contract = new OpenApiContract(doc as Json);
      this.byHash.set(hash, contract);
    }
    this.last = contract;
    return contract;
  }
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * `fetch` that checks every answer of a local gateway against its served document and hands each violation to
 * `report`. The caller gets the response untouched (a JSON body is read from a clone; streams are not read).
 */
export function checkedFetch(inner: FetchFn, contracts: ServedContracts, report: (v: ResponseViolation) => void): FetchFn {
  return async (input, init) => {
    const res = await inner(input, init);
    const request = input instanceof Request ? input : undefined;
    const url = new URL(request?.url ?? String(input instanceof URL ? input.href : input));
    // A gateway stamps every answer with x-request-id (app.ts). Other local servers (the billing hook and webhook
    // receivers the gateway itself calls, VictoriaMetrics) are not gateways and are never probed for a document.
    if (url.protocol !== 'http:' || !LOCAL_HOSTS.has(url.hostname) || !res.headers.has('x-request-id')) return res;
    const method = (init?.method ?? request?.method ?? 'GET').toUpperCase();
    const contract = await contracts.for(url.origin);
    if (!contract) return res;
    const { problems, excerpt } = await contract.problems(method, url.pathname, res);
    if (problems.length > 0) report({ method, path: url.pathname + url.search, status: res.status, problems, excerpt });
    return res;
  };
}

export function describeViolations(violations: ResponseViolation[]): string {
  return [
    `${violations.length} gateway response(s) do not match the served OpenAPI document:`,
    ...violations.map((v) => [`- ${v.method} ${v.path} → ${v.status}`, ...v.problems.map((p) => `    ${p}`), ...(v.excerpt ? [`    body: ${v.excerpt}`] : [])].join('\n')),
  ].join('\n');
}

async function readExcerpt(res: Response): Promise<string> {
  if (isStream(baseType(res.headers.get('content-type')))) return '';
  try {
    return (await res.clone().text()).slice(0, 300);
  } catch {
    return '';
  }
}

const isParam = (segment: string) => segment.startsWith('{') && segment.endsWith('}');
const escapePointer = (s: string) => s.replaceAll('~', '~0').replaceAll('/', '~1');
const baseType = (header: string | null) => (header ? header.split(';')[0]!.trim().toLowerCase() : undefined);
const isJson = (t: string | undefined) => t !== undefined && (t === 'application/json' || t.endsWith('+json'));
const isStream = (t: string | undefined) => t === 'text/event-stream' || t === 'application/x-ndjson' || t === 'application/ndjson';

function mediaMatches(documented: string, actual: string | undefined): boolean {
  if (actual === undefined) return false;
  const d = baseType(documented)!;
  if (d === '*/*') return true;
  if (d.endsWith('/*')) return actual.startsWith(d.slice(0, -1));
  return d === actual;
}

function valueAt(body: unknown, pointer: string): unknown {
  let v: any = body;
  for (const part of pointer.split('/').slice(1)) v = v?.[part.replaceAll('~1', '/').replaceAll('~0', '~')];
  return v;
}
