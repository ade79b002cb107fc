// Starts the real release binary on port 0 with a fresh SQLite store in a temp dir, and
// stops it. The address comes from the JSON log line `consult-scheduler listening`.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '..', '..', '..');

export const BINARY = process.env.CONSULT_BIN
  ? resolve(process.env.CONSULT_BIN)
  : join(REPO, 'target', 'release', 'consult-scheduler');

const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 10000;

/**
 * `await startServer({CONSULT__ENGINE__HOLD_TTL_S: '3'})` -> `{url, stop(), logs}`.
 * `logs` holds every stdout/stderr line (printed when a start fails).
 */
export async function startServer(overrides = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(
      `The release binary ${BINARY} does not exist. Build it first: ` +
        '`cargo build --release --bin consult-scheduler` (or point CONSULT_BIN at a binary).',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'consult-ui-'));
  const env = {
    ...process.env,
    CONSULT__SERVER__BIND: '127.0.0.1:0',
    CONSULT__DATABASE__URL: `sqlite://${dir}/store.db`,
    CONSULT__LOG__FORMAT: 'json',
    ...overrides,
  };
  delete env.RUST_LOG;
  const child = spawn(BINARY, ['serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = [];
  let exited = null;
  const exitedPromise = new Promise((resolveExit) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolveExit(exited);
    });
  });
  createInterface({ input: child.stderr }).on('line', (line) => logs.push(line));

  const addr = await new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not log its address in time')), START_TIMEOUT_MS);
    exitedPromise.then((e) => {
      clearTimeout(timer);
      reject(new Error(`the server exited before listening (${JSON.stringify(e)})`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      logs.push(line);
      let record;
      try {
        record = JSON.parse(line);
      } catch {
        return;
      }
      const fields = record.fields ?? record;
      if ((fields.message ?? record.message) === 'consult-scheduler listening') {
        clearTimeout(timer);
        resolveAddr(fields.addr ?? record.addr);
      }
    });
  }).catch(async (error) => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${error.message}\n--- server output ---\n${logs.join('\n')}`);
  });

  const url = `http://${addr}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.ok) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline || exited) {
      child.kill('SIGKILL');
      throw new Error(`the server at ${url} never became ready\n${logs.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  async function stop() {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exitedPromise;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  }

  return { url, stop, logs, dir };
}

/** Settings of a production-profile server (no dev sign-in, no fake sessions). */
export const PRODUCTION = {
  CONSULT__APP__PROFILE: 'production',
  CONSULT__AUTH__JWT_SECRET: 'ui-tests-production-secret-0123456789abcdef',
  CONSULT__SESSIONS__ENCRYPTION_KEY: Buffer.from(Array.from({ length: 32 }, (_, i) => i + 7)).toString('base64'),
  CONSULT__SESSIONS__PROVIDER: 'off',
};

/** A token minted by the binary's own CLI (`consult-scheduler token`) with `overrides`. */
export function mintToken(overrides, role, sub) {
  const r = spawnSync(BINARY, ['token', '--role', role, '--sub', String(sub)], {
    env: { ...process.env, ...overrides },
    encoding: 'utf8',
    timeout: 10000,
  });
  if (r.status !== 0) throw new Error(`consult-scheduler token failed: ${r.stderr}`);
  return r.stdout.trim();
}
