import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// `npm run dev` serves the client on its own port and proxies the REST paths and /ws to a
// running stack (KCHAT_DEV_API, KCHAT_DEV_GATEWAY), so that the page and the stack share
// one origin as they do behind nginx.
const api = process.env.KCHAT_DEV_API ?? 'http://127.0.0.1:17080';
const gateway = process.env.KCHAT_DEV_GATEWAY ?? 'ws://127.0.0.1:17081';

export default defineConfig({
  plugins: [react()],
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
      '/ws': { target: gateway, ws: true },
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
