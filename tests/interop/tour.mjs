// SPDX-License-Identifier: Apache-2.0
// SDK fidelity tour: drives the akv-emulator with Microsoft's official Azure SDKs for JavaScript
// (@azure/identity, @azure/keyvault-keys, -secrets, -certificates) and checks every answer, verifying
// cryptographic results independently with node:crypto. Run through run.sh, which starts the emulator and
// exports INTEROP_READY_FILE and NODE_EXTRA_CA_CERTS. Exit status: 0 all checks passed, 1 otherwise.
import { ClientSecretCredential } from "@azure/identity";
import { section, summary, check } from "./lib/harness.mjs";
import { loadReady, uniqueSuffix } from "./lib/util.mjs";
import { runIdentity } from "./sections/identity.mjs";
import { runKeys } from "./sections/keys.mjs";
import { runCrypto } from "./sections/crypto.mjs";
import { runHsm } from "./sections/hsm.mjs";
import { runSecrets } from "./sections/secrets.mjs";
import { runCertificates } from "./sections/certificates.mjs";
import { runErrors } from "./sections/errors.mjs";
import { runResilience } from "./sections/resilience.mjs";
import { runStats } from "./sections/stats.mjs";
import { runWire } from "./sections/wire.mjs";
import { wirePolicy } from "./lib/wire.mjs";

const SECTIONS = {
  identity: runIdentity,
  keys: runKeys,
  crypto: runCrypto,
  hsm: runHsm,
  secrets: runSecrets,
  certificates: runCertificates,
  errors: runErrors,
  resilience: runResilience,
  stats: runStats,
  wire: runWire,
};

// Passive pipeline policies (they change nothing on the wire): the recorder behind the wire section, and
// with INTEROP_TRACE=errors|all a printer of each failed (or every) exchange, for reporting a failure.
// Authorization headers are never recorded or printed.
function observerOptions() {
  const mode = process.env.INTEROP_TRACE;
  const recorder = { policy: wirePolicy, position: "perRetry" };
  if (!mode) return { additionalPolicies: [recorder] };
  const cut = (t) => (t === undefined || t === null ? "" : String(t).slice(0, 1500));
  const policy = {
    name: "interopTrace",
    async sendRequest(request, next) {
      const response = await next(request);
      // The SDK's first, token-less request to each vault draws the expected 401 challenge: not a failure.
      const challenge = response.status === 401 && !request.headers.has("authorization");
      if (mode === "all" || (response.status >= 400 && !challenge)) {
        const body = typeof request.body === "string" ? request.body : "";
        console.log(`# HTTP ${request.method} ${request.url} ${cut(body)}\n#   -> ${response.status} ${cut(response.bodyAsText)}`);
      }
      return response;
    },
  };
  return { additionalPolicies: [recorder, { policy, position: "perRetry" }] };
}

async function main() {
  const ready = loadReady();
  const vault = ready.vaults.find((v) => v.kind === "vault");
  const hsm = ready.vaults.find((v) => v.kind === "mhsm");
  const authOpts = { authorityHost: ready.authority_host, disableInstanceDiscovery: true };
  const ctx = {
    ready,
    authOpts,
    vaultUrl: vault ? vault.url.replace(/\/+$/, "") : undefined,
    hsmUrl: hsm ? hsm.url.replace(/\/+$/, "") : undefined,
    // The only concession to the emulator: its vault hosts are not *.vault.azure.net.
    clientOpts: { disableChallengeResourceVerification: true, ...observerOptions() },
    credential: new ClientSecretCredential(ready.tenant_id, ready.client_id, ready.client_secret, authOpts),
    suffix: uniqueSuffix(),
  };
  const only = (process.env.INTEROP_SECTIONS || "").split(",").filter(Boolean);
  for (const name of only) if (!SECTIONS[name]) throw new Error(`unknown section ${name} in INTEROP_SECTIONS`);
  section("setup");
  await check("ready file lists a vault and a Managed HSM", () => {
    if (!ctx.vaultUrl) throw new Error("no vault of kind 'vault' in the ready file");
    if (!ctx.hsmUrl) throw new Error("no vault of kind 'mhsm' in the ready file (start with --vault NAME:mhsm)");
  });
  for (const [name, run] of Object.entries(SECTIONS)) {
    if (only.length && !only.includes(name)) continue;
    section(name);
    try {
      await run(ctx);
    } catch (err) {
      // A section must not stop the tour; count the crash as a failed check.
      await check(`section ${name} ran to the end`, () => {
        throw err;
      });
    }
  }
}

let ok = false;
try {
  await main();
} catch (err) {
  await check("tour setup", () => {
    throw err;
  });
}
ok = summary();
process.exit(ok ? 0 : 1);
