// SPDX-License-Identifier: Apache-2.0
// The official-SDK baseline of akv-bench: @azure/keyvault-keys CryptographyClient.sign against the emulator,
// with `--concurrency N` signs in flight at once (N async loops on one event loop, the way a Node service
// uses the SDK), for `--duration S` seconds.
//
// Protocol with akv-bench (stdout is JSON lines, stdin is a go signal):
//   1. warm-up: token, key fetch, one sign per loop (connections opened); prints {"phase":"warm"}
//   2. waits for a line "go" on stdin (akv-bench resets the emulator's counters in between)
//   3. measures; prints {"phase":"done","ops":..,"errors":..,"elapsed_s":..,"p50_ms":..,"p99_ms":..,
//      "cpu_us":..,"samples":[{"digest":b64url,"signature":b64url},...]} and exits 0.
// Any failure prints {"phase":"error","error":"..."} and exits 1. Every wait is bounded.
// The message is hashed in the loop for RS256 (as the module does for CKM_SHA256_RSA_PKCS); for ES256 the
// 32 random bytes are the digest (CKM_ECDSA). The access token is never printed.
import { ClientSecretCredential } from "@azure/identity";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const GO_TIMEOUT_MS = 120000;
const MAX_SAMPLES = 16;
const MAX_LATENCIES = 1 << 21;

function fail(msg) {
  process.stdout.write(JSON.stringify({ phase: "error", error: String(msg).slice(0, 800) }) + "\n");
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { concurrency: 1, duration: 5 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (v === undefined) fail(`missing value for ${k}`);
    switch (k) {
      case "--ready": opts.ready = v; break;
      case "--vault": opts.vault = v; break;
      case "--key": opts.key = v; break;
      case "--alg": opts.alg = v; break;
      case "--concurrency": opts.concurrency = Number(v); break;
      case "--duration": opts.duration = Number(v); break;
      default: fail(`unknown option ${k}`);
    }
  }
  for (const k of ["ready", "vault", "key", "alg"]) if (!opts[k]) fail(`--${k} is required`);
  if (!["RS256", "ES256"].includes(opts.alg)) fail(`unsupported --alg ${opts.alg}`);
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1 || opts.concurrency > 256)
    fail("--concurrency must be 1..256");
  if (!(opts.duration > 0 && opts.duration <= 600)) fail("--duration must be in (0, 600]");
  return opts;
}

function waitForGo() {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin });
    let settled = false;
    // rl.close() emits "close" synchronously: settle first, so closing after "go" is not an error.
    const settle = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      rl.close();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => settle(new Error(`no "go" from akv-bench within ${GO_TIMEOUT_MS} ms`)), GO_TIMEOUT_MS);
    rl.on("line", (line) => {
      if (line.trim() === "go") settle();
    });
    rl.on("close", () => settle(new Error("stdin closed before go")));
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

function digestFor(alg) {
  const msg = randomBytes(32);
  return alg === "RS256" ? createHash("sha256").update(msg).digest() : msg;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const ready = JSON.parse(readFileSync(opts.ready, "utf8"));
  const credential = new ClientSecretCredential(ready.tenant_id, ready.client_id, ready.client_secret, {
    authorityHost: ready.authority_host,
    disableInstanceDiscovery: true,
  });
  const clientOpts = { disableChallengeResourceVerification: true };
  const key = await new KeyClient(opts.vault, credential, clientOpts).getKey(opts.key);
  const crypto = new CryptographyClient(key.id, credential, clientOpts);

  // Warm-up: one sign per loop, all in flight together, so the agent holds N open connections.
  await Promise.all(Array.from({ length: opts.concurrency }, () => crypto.sign(opts.alg, digestFor(opts.alg))));
  process.stdout.write(JSON.stringify({ phase: "warm" }) + "\n");
  await waitForGo();

  const latencies = [];
  const samples = [];
  let ops = 0;
  let errors = 0;
  let firstError;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(Math.round(opts.duration * 1e9));

  async function loop() {
    while (process.hrtime.bigint() < deadline) {
      const digest = digestFor(opts.alg);
      const s = process.hrtime.bigint();
      try {
        const r = await crypto.sign(opts.alg, digest);
        const e = process.hrtime.bigint();
        ops++;
        if (latencies.length < MAX_LATENCIES) latencies.push(Number(e - s) / 1e6);
        if (samples.length < MAX_SAMPLES)
          samples.push({ digest: digest.toString("base64url"), signature: Buffer.from(r.result).toString("base64url") });
      } catch (err) {
        errors++;
        if (!firstError) firstError = `${err.name}: ${err.message}`.slice(0, 400);
      }
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, loop));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const out = {
    phase: "done",
    ops,
    errors,
    elapsed_s: elapsed,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    cpu_us: cpu.user + cpu.system,
    samples,
  };
  if (firstError) out.first_error = firstError;
  process.stdout.write(JSON.stringify(out) + "\n");
}

const hardStop = setTimeout(() => fail("sdk-sign did not finish in time"), 15 * 60 * 1000);
hardStop.unref();
main().then(
  () => process.exit(0),
  (err) => fail(`${err && err.name ? err.name + ": " : ""}${err && err.message ? err.message : err}`),
);
