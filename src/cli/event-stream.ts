import type { ApiClient } from './api-client.js';

/**
 * Read `GET /v1/events` (server-sent events) as a stream through the generated client, the key in the Authorization
 * header; reconnects after a drop until `signal` aborts. `onOpen` runs when a connection is established (after its
 * first event).
 */
export async function followEvents(
  client: ApiClient,
  query: { meterId?: string },
  handlers: { onOrders?: (orders: any[]) => void; onStats?: (stats: any) => void; onOpen?: () => void },
  signal: AbortSignal,
): Promise<void> {
  let delay = 500;
  while (!signal.aborted) {
    try {
      const body = await client.ok(client.api.GET('/v1/events', { params: { query }, parseAs: 'stream', headers: { accept: 'text/event-stream' }, signal }));
      if (!body) throw new Error('no event stream');
      delay = 500;
      let opened = false;
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length === 0) continue;
          const parsed = JSON.parse(data.join('\n'));
          if (event === 'orders') handlers.onOrders?.(parsed);
          if (event === 'stats') handlers.onStats?.(parsed);
          if (!opened) {
            opened = true;
            handlers.onOpen?.();
          }
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}
