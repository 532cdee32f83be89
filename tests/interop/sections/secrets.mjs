// SPDX-License-Identifier: Apache-2.0
// SecretClient on the vault: set, get, get version, paging (default page size and
// maxresults), versions, update, disabled secrets, soft-delete poller, recover, purge.
import { SecretClient } from "@azure/keyvault-secrets";
import { assert, check, expectRestError, need } from "../lib/harness.mjs";
import { collect, collectPages } from "../lib/util.mjs";

const VERSION_RE = /^[0-9a-f]{32}$/;
const POLL = { intervalInMs: 250 };

export async function runSecrets(ctx) {
  const sc = new SecretClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const s = ctx.suffix;
  const vaultUrl = ctx.vaultUrl;
  const name = `secret-${s}`;
  // Multi-line, non-ASCII and JSON-hostile characters must survive unchanged.
  const v1 = `first "value" \\ with\nnewline, tab\t and unicode \u00e9\u4e2d\u{1F511}`;
  const v2 = "x".repeat(20000);

  const first = await check("setSecret with contentType and tags", async () => {
    const r = await sc.setSecret(name, v1, { contentType: "text/plain", tags: { a: "1" } });
    assert.equal(r.value, v1);
    assert.equal(r.name, name);
    assert.match(r.properties.version, VERSION_RE);
    assert.equal(r.properties.id, `${vaultUrl}/secrets/${name}/${r.properties.version}`);
    assert.equal(r.properties.contentType, "text/plain");
    assert.deepEqual(r.properties.tags, { a: "1" });
    assert.equal(r.properties.enabled, true);
    assert.ok(r.properties.createdOn instanceof Date);
    assert.equal(typeof r.properties.recoveryLevel, "string");
    return r;
  });
  const second = await check("setSecret again creates a new version (20 kB value)", async () => {
    const r = await sc.setSecret(name, v2);
    assert.notEqual(r.properties.version, need(first, "first version").properties.version);
    return r;
  });
  await check("getSecret returns the latest value", async () => {
    const r = await sc.getSecret(name);
    assert.equal(r.value, v2);
    assert.equal(r.properties.version, need(second, "second version").properties.version);
  });
  await check("getSecret with an explicit version", async () => {
    const r = await sc.getSecret(name, { version: need(first, "first version").properties.version });
    assert.equal(r.value, v1);
    assert.equal(r.properties.contentType, "text/plain");
  });
  await check("listPropertiesOfSecretVersions lists both versions without values", async () => {
    const items = await collect(sc.listPropertiesOfSecretVersions(name));
    const versions = items.map((i) => i.version).sort();
    assert.deepEqual(versions, [first, second].map((r) => need(r, "version").properties.version).sort());
    for (const i of items) assert.equal(i.value, undefined, "list items carry no value");
  });

  await check("updateSecretProperties: contentType, tags, expiry", async () => {
    const exp = new Date(Math.floor(Date.now() / 1000 + 86400 * 30) * 1000);
    const v = need(second, "second version").properties.version;
    const r = await sc.updateSecretProperties(name, v, { contentType: "application/octet-stream", tags: { b: "2" }, expiresOn: exp });
    assert.equal(r.contentType, "application/octet-stream");
    assert.deepEqual(r.tags, { b: "2" });
    assert.equal(r.expiresOn.getTime(), exp.getTime());
    assert.equal(r.version, v);
    const back = await sc.getSecret(name);
    assert.equal(back.value, v2, "value changed by an update");
    assert.equal(back.properties.contentType, "application/octet-stream");
  });
  await check("a disabled secret cannot be read (403 Forbidden) until re-enabled", async () => {
    const v = need(second, "second version").properties.version;
    const r = await sc.updateSecretProperties(name, v, { enabled: false });
    assert.equal(r.enabled, false);
    await expectRestError(() => sc.getSecret(name), 403, "Forbidden");
    await sc.updateSecretProperties(name, v, { enabled: true });
    assert.equal((await sc.getSecret(name)).value, v2);
  });

  // Paging: 27 secrets exceed one default page (25).
  const pageNames = [];
  await check("set 27 secrets for paging", async () => {
    for (let i = 0; i < 27; i++) {
      const n = `page-secret-${i}-${s}`;
      await sc.setSecret(n, `v${i}`);
      pageNames.push(n);
    }
  });
  await check("listPropertiesOfSecrets default pages (<= 25 items, nextLink followed)", async () => {
    const pages = await collectPages(sc.listPropertiesOfSecrets());
    assert.ok(pages.length >= 2, `expected >= 2 pages, got ${pages.length}`);
    for (const p of pages) assert.ok(p.length <= 25, `page of ${p.length} items`);
    const names = pages.flat().map((p) => p.name);
    assert.equal(new Set(names).size, names.length, "a secret appears twice");
    for (const n of [...pageNames, name]) assert.ok(names.includes(n), `${n} missing`);
    for (const item of pages.flat()) assert.equal(item.id, `${vaultUrl}/secrets/${item.name}`);
  });
  await check("listPropertiesOfSecrets with maxresults=10", async () => {
    const pages = await collectPages(sc.listPropertiesOfSecrets(), { maxPageSize: 10 });
    assert.ok(pages.length >= 3, `expected >= 3 pages, got ${pages.length}`);
    for (const p of pages) assert.ok(p.length <= 10);
    const names = pages.flat().map((p) => p.name);
    for (const n of pageNames) assert.ok(names.includes(n), `${n} missing`);
  });

  await check("a value over 25 KiB is refused (400)", () => expectRestError(() => sc.setSecret(`big-${s}`, "y".repeat(25 * 1024 + 1)), 400));
  await check("more than 15 tags are refused (400)", () => {
    const tags = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, "v"]));
    return expectRestError(() => sc.setSecret(`tags-${s}`, "v", { tags }), 400);
  });
  await check("backupSecret / purge / restoreSecretBackup brings back every version", async () => {
    const bname = `backup-${s}`;
    const a = await sc.setSecret(bname, "one");
    const b = await sc.setSecret(bname, "two", { contentType: "text/x-two" });
    const blob = await sc.backupSecret(bname);
    assert.ok(blob && blob.length > 16, "empty backup blob");
    await (await sc.beginDeleteSecret(bname, POLL)).pollUntilDone();
    await sc.purgeDeletedSecret(bname);
    await expectRestError(() => sc.getSecret(bname), 404, "SecretNotFound");
    const restored = await sc.restoreSecretBackup(blob);
    assert.equal(restored.name, bname);
    assert.equal(restored.version, b.properties.version);
    const latest = await sc.getSecret(bname);
    assert.equal(latest.value, "two");
    assert.equal(latest.properties.contentType, "text/x-two");
    assert.equal((await sc.getSecret(bname, { version: a.properties.version })).value, "one");
  });
  await check("a Managed HSM has no secrets (404)", async () => {
    const hs = new SecretClient(ctx.hsmUrl, ctx.credential, ctx.clientOpts);
    await expectRestError(() => hs.getSecret(`any-${s}`), 404);
  });

  // Soft-delete, recover, purge.
  let deletedVersion;
  await check("beginDeleteSecret poller completes with a DeletedSecret", async () => {
    const poller = await sc.beginDeleteSecret(name, POLL);
    const del = await poller.pollUntilDone();
    assert.equal(del.name, name);
    assert.equal(del.properties.recoveryId, `${vaultUrl}/deletedsecrets/${name}`);
    assert.ok(del.properties.deletedOn instanceof Date);
    assert.ok(del.properties.scheduledPurgeDate > del.properties.deletedOn);
    deletedVersion = del.properties.version;
  });
  await check("getSecret of a deleted secret is 404 SecretNotFound", () =>
    expectRestError(() => sc.getSecret(name), 404, "SecretNotFound"));
  await check("getDeletedSecret returns it", async () => {
    const d = await sc.getDeletedSecret(name);
    assert.equal(d.name, name);
    assert.equal(d.properties.version, deletedVersion);
  });
  await check("listDeletedSecrets includes it", async () => {
    const items = await collect(sc.listDeletedSecrets());
    assert.ok(items.some((d) => d.name === name), `${name} not listed`);
  });
  await check("setSecret on a deleted-but-recoverable name is 409 Conflict", () =>
    expectRestError(() => sc.setSecret(name, "again"), 409, "Conflict"));
  await check("beginRecoverDeletedSecret restores the value", async () => {
    const poller = await sc.beginRecoverDeletedSecret(name, POLL);
    await poller.pollUntilDone();
    const r = await sc.getSecret(name);
    assert.equal(r.value, v2);
    assert.equal(r.properties.version, deletedVersion);
  });
  await check("delete again and purgeDeletedSecret", async () => {
    await (await sc.beginDeleteSecret(name, POLL)).pollUntilDone();
    await sc.purgeDeletedSecret(name);
  });
  await check("getDeletedSecret after purge is 404 SecretNotFound", () =>
    expectRestError(() => sc.getDeletedSecret(name), 404, "SecretNotFound"));
}
