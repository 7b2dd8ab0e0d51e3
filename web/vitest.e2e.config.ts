import { defineConfig } from 'vitest/config';

// End-to-end tests: a real Chromium against a running stack behind the ingress. Run them
// with `npm run e2e -- <base URL>` (e2e/run.mjs), never with `npm test`.
export default defineConfig({
  test: {
    include: ['e2e/**/*.e2e.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
