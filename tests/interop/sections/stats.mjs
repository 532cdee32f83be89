// The emulator's own statistics endpoint (DESIGN.md §8): after the tour it must have counted requests.
import { assert, check } from "../lib/harness.mjs";

export async function runStats(ctx) {
  await check("stats endpoint counts data-plane and token requests", async () => {
    const url = ctx.ready.stats_url;
    assert.equal(typeof url, "string", "ready file has no stats_url");
    const res = await fetch(url);
    assert.equal(res.status, 200);
    const st = await res.json();
    assert.equal(typeof st.requests_total, "number");
    assert.ok(st.requests_total > 100, `requests_total ${st.requests_total}`);
    assert.equal(typeof st.by_operation, "object");
    const ops = Object.entries(st.by_operation);
    assert.ok(ops.length > 10, `only ${ops.length} operations counted`);
    const tokenCount = ops.filter(([k]) => /token/i.test(k)).reduce((a, [, v]) => a + v, 0);
    assert.ok(tokenCount >= 1, "no token requests counted");
  });
}
