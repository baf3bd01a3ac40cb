// Live updates from GET /v1/events (server-sent events), read with fetch so the key travels in the
// Authorization header (EventSource cannot send headers, and a key in a URL ends up in logs).

import { session } from './api.js';

const orderListeners = new Set();
const statsListeners = new Set();
const stateListeners = new Set();
let controller = null;
let lastStats = null;
let state = 'off';

function setState(s) {
  state = s;
  for (const fn of stateListeners) fn(s);
}

/** Call fn(orders[]) with every batch of changed orders; returns an unsubscribe function. */
export function onOrders(fn) {
  orderListeners.add(fn);
  return () => orderListeners.delete(fn);
}

/** Call fn(stats) now (if known) and on every stats event; returns an unsubscribe function. */
export function onStats(fn) {
  statsListeners.add(fn);
  if (lastStats) fn(lastStats);
  return () => statsListeners.delete(fn);
}

export function onLiveState(fn) {
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

function dispatch(event, data) {
  let parsed;
  try {
    parsed = JSON.parse(data);
  } catch {
    return;
  }
  if (event === 'orders') for (const fn of orderListeners) fn(parsed);
  if (event === 'stats') {
    lastStats = parsed;
    for (const fn of statsListeners) fn(parsed);
  }
}

async function run(signal) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      setState('connecting');
      const res = await fetch('/v1/events', { headers: { authorization: `Bearer ${session.key}`, accept: 'text/event-stream' }, signal });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setState('on');
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length) dispatch(event, data.join('\n'));
        }
      }
    } catch (err) {
      if (signal.aborted) break;
    }
    setState('reconnecting');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
  setState('off');
}

export function startLive() {
  stopLive();
  controller = new AbortController();
  void run(controller.signal);
}

export function stopLive() {
  controller?.abort();
  controller = null;
  lastStats = null;
}
