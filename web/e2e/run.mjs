#!/usr/bin/env node
// Runs the end-to-end tests against a running kchat behind its ingress.
//
//   npm run e2e -- http://127.0.0.1:8080 [--artifacts DIR] [--chromium PATH] [vitest args...]
//
// The base URL is the ingress (the page, the REST paths and /ws on one origin). Screenshots
// go to DIR (default web/e2e/artifacts). Chromium is Debian's /usr/bin/chromium unless
// --chromium or KCHAT_CHROMIUM says otherwise. The exit status is vitest's.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let base = null;
let artifacts = resolve(here, 'artifacts');
let chromium = process.env.KCHAT_CHROMIUM || '/usr/bin/chromium';
const rest = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--artifacts') artifacts = resolve(args[++i] ?? '');
  else if (a === '--chromium') chromium = args[++i] ?? '';
  else if (base === null && /^https?:\/\//.test(a)) base = a.replace(/\/+$/, '');
  else rest.push(a);
}
base ??= process.env.KCHAT_E2E_BASE_URL ?? null;
if (!base) {
  console.error('usage: npm run e2e -- <base URL, e.g. http://127.0.0.1:8080> [--artifacts DIR] [--chromium PATH]');
  process.exit(2);
}
if (!existsSync(chromium)) {
  console.error(`e2e: no Chromium at ${chromium} (apt-get install chromium, or --chromium PATH)`);
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const vitest = resolve(here, '..', 'node_modules', 'vitest', 'vitest.mjs');
const r = spawnSync(process.execPath, [vitest, 'run', '--config', resolve(here, '..', 'vitest.e2e.config.ts'), ...rest], {
  cwd: resolve(here, '..'),
  stdio: 'inherit',
  env: { ...process.env, KCHAT_E2E_BASE_URL: base, KCHAT_E2E_ARTIFACTS: artifacts, KCHAT_CHROMIUM: chromium },
});
process.exit(r.status ?? 1);
