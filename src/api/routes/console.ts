import type { FastifyInstance } from 'fastify';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { projectRoot } from '../../config/project-root.js';
import type { ApiDeps } from '../deps.js';

/**
 * The operator console (DESIGN.md §5): plain HTML, CSS and JavaScript modules from `src/console/`, served as they
 * are (no bundler). Only files with a known type below that directory are served; anything else is 404, so a
 * crafted path ("..", encoded or not) never reaches another file. The console talks to the same API as everyone
 * else, with the key the user signs in with.
 */
const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Everything the console loads comes from this origin; nothing from a CDN. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** The file under `root` a request path names, or undefined when it names none we serve. */
export function consoleFile(root: string, requestPath: string): string | undefined {
  let rel: string;
  try {
    rel = decodeURIComponent(requestPath);
  } catch {
    return undefined;
  }
  if (rel === '' || rel.endsWith('/')) rel += 'index.html';
  if (rel.includes('\0') || rel.includes('\\')) return undefined;
  const parts = rel.split('/');
  // No "..", no dotfiles, no empty segments ("a//b").
  if (parts.some((p) => p === '' || p.startsWith('.'))) return undefined;
  if (!(extname(rel) in TYPES)) return undefined;
  const file = normalize(join(root, ...parts));
  return file.startsWith(root + sep) ? file : undefined;
}

export async function consoleRoutes(app: FastifyInstance, _deps: ApiDeps): Promise<void> {
  const root = join(projectRoot(), 'src', 'console');

  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/'));
  app.get('/console', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/'));
  app.get<{ Params: { '*': string } }>('/console/*', { schema: { hide: true } }, async (req, reply) => {
    const file = consoleFile(root, req.params['*']);
    const content = file ? await readFile(file).catch(() => undefined) : undefined;
    if (!file || !content) {
      return reply.code(404).send({ code: 'E_NOT_FOUND', message: `no console file ${req.url}; open /console/`, requestId: req.id });
    }
    return reply
      .header('content-type', TYPES[extname(file)]!)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('content-security-policy', CSP)
      .send(content);
  });
}
