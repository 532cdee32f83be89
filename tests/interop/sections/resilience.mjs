// SPDX-License-Identifier: Apache-2.0
// The emulator's fault injection and timing knobs (control endpoint, docs/emulator.md) as the official SDK
// experiences them: throttling with and without Retry-After, 5xx, dropped
// connections, latency, a rejected (expired) bearer token, broken bodies, the "being deleted" window of
// soft-delete and short-lived tokens.
import { ClientSecretCredential } from "@azure/identity";
import { KeyClient } from "@azure/keyvault-keys";
import { SecretClient } from "@azure/keyvault-secrets";
import { assert, check, expectRestError } from "../lib/harness.mjs";

async function control(ctx, path, body) {
  const res = await fetch(`${ctx.ready.control_url}${path}`, {
    method: "POST", body: typeof body === "string" ? body : JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  const doc = await res.json();
  assert.equal(res.status, 200, `control ${path}: ${JSON.stringify(doc)}`);
  return doc;
}

async function firedCount(ctx) {
  const res = await fetch(`${ctx.ready.control_url}/faults`);
  const doc = await res.json();
  return doc.faults.reduce((a, f) => a + f.fired, 0);
}

async function tokenRequests(ctx) {
  const res = await fetch(ctx.ready.stats_url);
  return (await res.json()).by_operation.token || 0;
}

// Sets a fault spec, runs fn, checks how often the fault fired, and always clears the faults.
async function withFault(ctx, spec, fn) {
  await control(ctx, "/faults", { spec });
  try {
    const t0 = Date.now();
    const value = await fn();
    return { value, elapsed: Date.now() - t0, fired: await firedCount(ctx) };
  } finally {
    await control(ctx, "/faults", { spec: "" });
  }
}

export async function runResilience(ctx) {
  const sc = new SecretClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const kc = new KeyClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const s = ctx.suffix;
  const name = `resilience-${s}`;
  await check("set a secret for the fault checks", () => sc.setSecret(name, "steady"));
  // {} changes nothing and returns the current settings, restored after each timing check.
  const initial = await check("read the emulator's timing settings", () => control(ctx, "/config", {}));
  const readBack = async () => assert.equal((await sc.getSecret(name)).value, "steady");

  await check("429 with Retry-After: 2 is honoured and the call succeeds", async () => {
    const r = await withFault(ctx, "429:2#1", readBack);
    assert.equal(r.fired, 1);
    assert.ok(r.elapsed >= 1900, `retried after ${r.elapsed} ms, Retry-After asked for 2 s`);
  });
  await check("429 with Retry-After as an HTTP-date is honoured and the call succeeds", async () => {
    const r = await withFault(ctx, "429-date:2#1", readBack);
    assert.equal(r.fired, 1);
    // An IMF-fixdate has one-second resolution: "2 s ahead" means a wait of 1 to 2 s.
    assert.ok(r.elapsed >= 900, `retried after ${r.elapsed} ms`);
  });
  // core-rest-pipeline retries 429 only when Retry-After (or retry-after-ms) is present; its exponential
  // strategy covers 408 and 5xx. Key Vault's 429 usually has no Retry-After, so the JS SDK surfaces it.
  await check("429 without Retry-After (Key Vault's usual form) surfaces as RestError 429 Throttled", async () => {
    const r = await withFault(ctx, "429-noretry#1", async () => {
      await expectRestError(() => sc.getSecret(name), 429, "Throttled");
      await readBack();
    });
    assert.equal(r.fired, 1);
  });
  for (const status of [500, 502, 503, 504]) {
    await check(`${status} once: SDK retries and succeeds`, async () => {
      const r = await withFault(ctx, `${status}#1`, readBack);
      assert.equal(r.fired, 1);
    });
  }
  await check("dropped connection once: SDK retries and succeeds", async () => {
    const r = await withFault(ctx, "drop#1", readBack);
    assert.equal(r.fired, 1);
  });
  await check("latency 700 ms: the call waits and succeeds", async () => {
    const r = await withFault(ctx, "latency:700#1", readBack);
    assert.equal(r.fired, 1);
    assert.ok(r.elapsed >= 650, `call took ${r.elapsed} ms`);
  });
  await check("bearer token rejected as expired: SDK answers the challenge and succeeds", async () => {
    const r = await withFault(ctx, "token-expired#1", readBack);
    assert.equal(r.fired, 1);
  });
  await check("a 200 with a non-JSON body surfaces as an error", async () => {
    const r = await withFault(ctx, "badjson#1", () => sc.getSecret(name).then(() => "resolved", (e) => e));
    assert.equal(r.fired, 1);
    assert.ok(r.value instanceof Error, "getSecret resolved despite a non-JSON body");
  });
  await check("a truncated body is not taken as a valid answer", async () => {
    const r = await withFault(ctx, "truncate#1", () => sc.getSecret(name).then((v) => v, (e) => e));
    assert.equal(r.fired, 1);
    // Either the SDK retried and got the whole secret, or it reported the broken response.
    if (!(r.value instanceof Error)) assert.equal(r.value.value, "steady");
  });

  // Soft-delete with the "being deleted" window real vaults have.
  await check("delete with a 1.5 s 'being deleted' window: poller waits; re-create is 409 ObjectIsBeingDeleted", async () => {
    const dname = `slowdelete-${s}`;
    await kc.createEcKey(dname, { curve: "P-256" });
    await control(ctx, "/config", { delete_delay_ms: 1500 });
    try {
      const t0 = Date.now();
      const poller = await kc.beginDeleteKey(dname, { intervalInMs: 200 });
      const err = await expectRestError(() => kc.createEcKey(dname, { curve: "P-256" }), 409, "Conflict");
      // The SDK deserializes the service's "innererror" member as innerError.
      const inner = err.details && err.details.error && err.details.error.innerError;
      assert.equal(inner && inner.code, "ObjectIsBeingDeleted", `innererror ${JSON.stringify(err.details)}`);
      await expectRestError(() => kc.getDeletedKey(dname), 404, "KeyNotFound");
      const del = await poller.pollUntilDone();
      assert.equal(del.name, dname);
      assert.ok(Date.now() - t0 >= 1400, `poller finished after ${Date.now() - t0} ms`);
      const err2 = await expectRestError(() => kc.createEcKey(dname, { curve: "P-256" }), 409, "Conflict");
      const inner2 = err2.details && err2.details.error && err2.details.error.innerError;
      assert.equal(inner2 && inner2.code, "ObjectIsDeletedButRecoverable");
    } finally {
      await control(ctx, "/config", { delete_delay_ms: initial ? initial.delete_delay_ms : 0 });
    }
  });

  await check("5 s tokens: the credential fetches a new token once the old one expired", async () => {
    await control(ctx, "/config", { token_ttl: 5 });
    try {
      const cred = new ClientSecretCredential(ctx.ready.tenant_id, ctx.ready.client_id, ctx.ready.client_secret,
        ctx.authOpts);
      const short = new SecretClient(ctx.vaultUrl, cred, ctx.clientOpts);
      const t1 = await cred.getToken("https://vault.azure.net/.default");
      const life = t1.expiresOnTimestamp - Date.now();
      assert.ok(life > 0 && life <= 6000, `token lifetime ${life} ms, expected about 5 s`);
      assert.equal((await short.getSecret(name)).value, "steady");
      const tokensBefore = await tokenRequests(ctx);
      await new Promise((r) => setTimeout(r, 5500));
      assert.equal((await short.getSecret(name)).value, "steady");
      assert.ok(await tokenRequests(ctx) > tokensBefore, "no new token request after expiry");
    } finally {
      await control(ctx, "/config", { token_ttl: initial ? initial.token_ttl : 3599 });
    }
  });

  // Last, because revocation kills every token issued so far, including the tour's shared credential's cached
  // one: the later sections use the fresh credential.
  const fresh = new ClientSecretCredential(ctx.ready.tenant_id, ctx.ready.client_id, ctx.ready.client_secret, ctx.authOpts);
  await check("revoked tokens: the client holding one is refused (401), a fresh credential works", async () => {
    const r = await withFault(ctx, "token-revoke#1", async () => {
      // The SDK answers the 401 by asking its credential again, which returns the same cached (revoked) token.
      const err = await sc.getSecret(name).then(() => undefined, (e) => e);
      const value = (await new SecretClient(ctx.vaultUrl, fresh, ctx.clientOpts).getSecret(name)).value;
      return { err, value };
    });
    assert.equal(r.fired, 1);
    assert.ok(r.value.err, "a revoked token was still accepted");
    assert.equal(r.value.err.statusCode, 401, `got ${r.value.err.name} ${r.value.err.statusCode}: ${r.value.err.message}`);
    assert.equal(r.value.value, "steady");
  });
  ctx.credential = fresh;
}
