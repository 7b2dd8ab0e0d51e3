import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'vite';
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// `npm run dev` serves the client on its own port and proxies the REST paths and /ws to a
// running stack (KCHAT_DEV_API, KCHAT_DEV_GATEWAY), so that the page and the stack share
// one origin as they do behind nginx.
const api = process.env.KCHAT_DEV_API ?? 'http://127.0.0.1:17080';
const gateway = process.env.KCHAT_DEV_GATEWAY ?? 'ws://127.0.0.1:17081';

const SW_ENTRY = fileURLToPath(new URL('./src/sw/sw.ts', import.meta.url));
const SW_FILE = 'sw.js';

/** The service worker (src/sw/sw.ts and what it imports) as one classic script: every
 * browser with Push runs a classic worker, few a module one. Its files, by name. */
async function bundleWorker(dev: boolean): Promise<Map<string, string | Uint8Array>> {
  const out = await build({
    configFile: false,
    logLevel: 'warn',
    publicDir: false,
    mode: dev ? 'development' : 'production',
    build: {
      write: false,
      emptyOutDir: false,
      copyPublicDir: false,
      target: 'es2022',
      minify: !dev,
      sourcemap: dev ? 'inline' : true,
      rollupOptions: {
        input: SW_ENTRY,
        output: { format: 'iife', entryFileNames: SW_FILE, inlineDynamicImports: true },
      },
    },
  });
  const files = new Map<string, string | Uint8Array>();
  for (const o of Array.isArray(out) ? out : [out]) {
    if (!('output' in o)) continue;
    for (const f of o.output) files.set(f.fileName, f.type === 'chunk' ? f.code : f.source);
  }
  if (!files.has(SW_FILE)) throw new Error(`the service worker build made no ${SW_FILE}`);
  return files;
}

/**
 * Puts the service worker at the site's root, /sw.js (a worker's scope can be no wider than
 * its script's folder, and it must be "/"), under a name without a content hash: browsers
 * check that one URL for updates. The ingress serves it like index.html (`no-cache`), and
 * the page registers it with updateViaCache 'none'. The dev server builds it on each request.
 */
function serviceWorker(): Plugin {
  return {
    name: 'kchat-service-worker',
    configureServer(server) {
      server.middlewares.use(`/${SW_FILE}`, (_req, res, next) => {
        bundleWorker(true).then((files) => {
          res.setHeader('Content-Type', 'text/javascript; charset=utf-8');
          res.setHeader('Cache-Control', 'no-cache');
          res.end(files.get(SW_FILE));
        }, next);
      });
    },
    async generateBundle() {
      for (const [fileName, source] of await bundleWorker(false)) this.emitFile({ type: 'asset', fileName, source });
    },
  };
}

export default defineConfig({
  plugins: [react(), serviceWorker()],
  // a single-page app: any other path the dev server does not know (/c/<id>, /c/<id>/m/<seq>,
  // /find?q=, /new) gets index.html, as behind the ingress, so deep links and reloads work
  appType: 'spa',
  build: { outDir: 'dist', sourcemap: true, target: 'es2022' },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/auth': api,
      '/conversations': api,
      '/search': api,
      '/users': api,
      '/attachments': api,
      '/push': api,
      '/ws': { target: gateway, ws: true },
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
