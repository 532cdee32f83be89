// SPDX-License-Identifier: Apache-2.0
// The emulator's statistics (docs/emulator.md): cumulative counts after the tour, then exact counts of what
// SDK calls cost after a reset through the control endpoint.
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import { SecretClient } from "@azure/keyvault-secrets";
import { assert, check, need } from "../lib/harness.mjs";
import { digest } from "../lib/util.mjs";

async function stats(ctx) {
  const res = await fetch(ctx.ready.stats_url);
  assert.equal(res.status, 200);
  const st = await res.json();
  assert.equal(typeof st.requests_total, "number");
  assert.equal(typeof st.by_operation, "object");
  return st;
}

export async function runStats(ctx) {
  const sc = new SecretClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const kc = new KeyClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const name = `stats-${ctx.suffix}`;

  await check("stats after the tour count data-plane and token requests", async () => {
    const st = await stats(ctx);
    assert.equal(typeof ctx.ready.stats_url, "string", "ready file has no stats_url");
    assert.ok(st.requests_total > 10, `requests_total ${st.requests_total}`);
    const ops = Object.keys(st.by_operation);
    assert.ok(ops.length > 3, `only ${ops.length} operations counted`);
    assert.ok((st.by_operation.token || 0) >= 1, "no token requests counted");
    // Connection counters: every listener was used, and keep-alive (the SDK's agent reuses connections)
    // keeps the number of vault connections well below the number of vault requests.
    console.log(`# stats: ${st.requests_total} vault requests, connections ${JSON.stringify(st.connections_by_listener)}`);
    const by = st.connections_by_listener || {};
    for (const l of ["entra", "identity", ...ctx.ready.vaults.map((v) => v.name)]) {
      assert.ok(by[l] && by[l].total >= 1, `no connections counted on listener ${l}`);
    }
    const vaultConns = ctx.ready.vaults.reduce((a, v) => a + by[v.name].total, 0);
    if (!process.env.INTEROP_SECTIONS) {
      assert.ok(vaultConns * 2 < st.requests_total, `${vaultConns} vault connections for ${st.requests_total} requests`);
    }
  });
  const key = await check("prepare a secret and a key (token already cached)", async () => {
    await sc.setSecret(name, "counted");
    return kc.createEcKey(name, { curve: "P-256" });
  });
  // The new CryptographyClient has its own pipeline, so its first request is a token-less challenge probe:
  // 7 data-plane requests in all, one of them answered 401.
  await check("after a stats reset, 3 getSecret + challenge + 2 sign + 1 getKey are counted exactly", async () => {
    const res = await fetch(`${ctx.ready.control_url}/stats/reset`, { method: "POST" });
    assert.equal(res.status, 200);
    const zero = await stats(ctx);
    assert.equal(zero.requests_total, 0);
    for (let i = 0; i < 3; i++) await sc.getSecret(name);
    const cc = new CryptographyClient(need(key, "key"), ctx.credential, ctx.clientOpts);
    const md = digest("sha256", Buffer.from("stats"));
    await cc.sign("ES256", md);
    await cc.sign("ES256", md);
    await kc.getKey(name);
    const st = await stats(ctx);
    assert.equal(st.by_operation["secrets.get"], 3, JSON.stringify(st.by_operation));
    assert.equal(st.by_operation["keys.sign"], 2, JSON.stringify(st.by_operation));
    assert.equal(st.by_operation["keys.get"], 1, JSON.stringify(st.by_operation));
    assert.equal(st.by_operation.token || 0, 0, "a cached token was requested again");
    assert.equal(st.by_operation.unauthorized, 1, JSON.stringify(st.by_operation));
    assert.equal(st.requests_total, 7, JSON.stringify(st));
  });
}
