// The console calls the same API as every other client, with the key the user signed in with.

const KEY = 'meterline.key';

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
  /** {name, role, permissions} from GET /v1/whoami. */
  who: null,
  can(permission) {
    return Boolean(this.who?.permissions.includes(permission));
  },
};

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Listeners told when the key stops working (401), so the app can go back to the sign-in page. */
const onUnauthorized = new Set();
export const whenUnauthorized = (fn) => onUnauthorized.add(fn);

/**
 * fetch a JSON route. Writes pass `idempotencyKey` (every write needs one). Errors become ApiError with the
 * API's code and message.
 */
export async function api(path, { method = 'GET', body, idempotencyKey, key = session.key } = {}) {
  const headers = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'E_NETWORK', `the gateway did not answer (${err.message}); check that it is running`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data?.code ?? `HTTP_${res.status}`, data?.message ?? res.statusText, data?.details);
    if (res.status === 401 && key === session.key) for (const fn of onUnauthorized) fn(err);
    throw err;
  }
  return data;
}

export const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
};

/**
 * Save what a route answers as a file (a CSV export). The route needs the signed-in key, which a plain link cannot
 * carry: fetched with it, then handed to the browser as a download.
 */
export async function downloadWithKey(url, filename) {
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${session.key}` } });
    if (!res.ok) throw new Error((await res.json().catch(() => null))?.message ?? res.statusText);
    const file = URL.createObjectURL(await res.blob());
    const a = document.createElement('a');
    a.href = file;
    a.download = filename;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(file), 10_000);
  } catch (err) {
    window.alert(`The export failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
