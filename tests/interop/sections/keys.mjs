// SPDX-License-Identifier: Apache-2.0
// KeyClient lifecycle on the vault: create (RSA sizes, EC curves), import, get, versions, paging, update,
// rotate, soft-delete with the poller, deleted-key listing, recover, purge.
import { generateKeyPairSync, verify } from "node:crypto";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import { assert, check, expectRestError, need } from "../lib/harness.mjs";
import { collect, collectPages, digest, publicKeyFromSdkJwk, sdkJwkFromNodeJwk, spkiDer } from "../lib/util.mjs";

const VERSION_RE = /^[0-9a-f]{32}$/;
const ALL_RSA_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"];
const CURVE_BYTES = { "P-256": 32, "P-384": 48, "P-521": 66, "P-256K": 32 };
const POLL = { intervalInMs: 250 };

// Shape checks every KeyBundle must pass.
export function assertKeyShape(key, { vaultUrl, name, kty }) {
  assert.equal(key.name, name);
  assert.match(key.properties.version, VERSION_RE, `version ${key.properties.version}`);
  assert.equal(key.id, `${vaultUrl}/keys/${name}/${key.properties.version}`);
  assert.equal(key.key.kid, key.id);
  assert.equal(key.properties.vaultUrl, vaultUrl);
  if (kty) assert.equal(key.keyType, kty);
  assert.equal(key.properties.enabled, true);
  assert.ok(key.properties.createdOn instanceof Date && !isNaN(key.properties.createdOn), "createdOn missing");
  assert.ok(key.properties.updatedOn instanceof Date, "updatedOn missing");
  assert.equal(typeof key.properties.recoveryLevel, "string", "recoveryLevel missing");
  assert.equal(key.key.d, undefined, "private exponent returned");
  assert.equal(key.key.k, undefined, "symmetric key material returned");
}

const sortOps = (ops) => [...(ops || [])].sort();

export async function runKeys(ctx) {
  const kc = new KeyClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const s = ctx.suffix;
  const vaultUrl = ctx.vaultUrl;

  for (const size of [2048, 3072, 4096]) {
    await check(`createRsaKey ${size}`, async () => {
      const name = `rsa${size}-${s}`;
      const key = await kc.createRsaKey(name, { keySize: size });
      assertKeyShape(key, { vaultUrl, name, kty: "RSA" });
      assert.equal(key.key.n.length, size / 8, "modulus length");
      assert.deepEqual(Buffer.from(key.key.e), Buffer.from([1, 0, 1]), "public exponent");
      assert.deepEqual(sortOps(key.keyOperations), sortOps(ALL_RSA_OPS), "default key_ops of an RSA key");
      assert.equal(publicKeyFromSdkJwk(key.key).asymmetricKeyDetails.modulusLength, size);
    });
  }

  await check("createKey RSA without size defaults to 2048 bits", async () => {
    const key = await kc.createKey(`rsadefault-${s}`, "RSA");
    assert.equal(key.key.n.length, 256);
  });

  await check("createRsaKey with hsm: true gives RSA-HSM", async () => {
    const key = await kc.createRsaKey(`rsahsm-${s}`, { hsm: true });
    assertKeyShape(key, { vaultUrl, name: `rsahsm-${s}`, kty: "RSA-HSM" });
  });

  for (const crv of ["P-256", "P-384", "P-521", "P-256K"]) {
    await check(`createEcKey ${crv}`, async () => {
      const name = `ec${crv.replace("-", "").toLowerCase()}-${s}`;
      const key = await kc.createEcKey(name, { curve: crv });
      assertKeyShape(key, { vaultUrl, name, kty: "EC" });
      assert.equal(key.key.crv, crv);
      assert.equal(key.key.x.length, CURVE_BYTES[crv], "x coordinate length");
      assert.equal(key.key.y.length, CURVE_BYTES[crv], "y coordinate length");
      assert.ok(key.keyOperations.includes("sign") && key.keyOperations.includes("verify"));
      publicKeyFromSdkJwk(key.key); // the point must be on the curve
    });
  }

  await check("createEcKey without curve defaults to P-256", async () => {
    const key = await kc.createKey(`ecdefault-${s}`, "EC");
    assert.equal(key.key.crv, "P-256");
  });

  await check("importKey RSA JWK (public half returned, private never)", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = sdkJwkFromNodeJwk(privateKey.export({ format: "jwk" }), { keyOps: ["sign", "verify", "encrypt", "decrypt"] });
    const name = `imported-rsa-${s}`;
    const key = await kc.importKey(name, jwk, { tags: { origin: "node" } });
    assertKeyShape(key, { vaultUrl, name, kty: "RSA" });
    assert.deepEqual(spkiDer(publicKeyFromSdkJwk(key.key)), spkiDer(publicKey), "imported public key differs");
    assert.deepEqual(sortOps(key.keyOperations), sortOps(["sign", "verify", "encrypt", "decrypt"]));
    assert.deepEqual(key.properties.tags, { origin: "node" });
  });

  await check("importKey EC P-384 JWK", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const name = `imported-ec-${s}`;
    const key = await kc.importKey(name, sdkJwkFromNodeJwk(privateKey.export({ format: "jwk" })));
    assertKeyShape(key, { vaultUrl, name, kty: "EC" });
    assert.equal(key.key.crv, "P-384");
    assert.deepEqual(spkiDer(publicKeyFromSdkJwk(key.key)), spkiDer(publicKey));
  });

  await check("importKey with hardwareProtected gives RSA-HSM", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const name = `imported-hsm-${s}`;
    const key = await kc.importKey(name, sdkJwkFromNodeJwk(privateKey.export({ format: "jwk" })), { hardwareProtected: true });
    assertKeyShape(key, { vaultUrl, name, kty: "RSA-HSM" });
  });
  await check("more than 15 tags are refused (400)", () => {
    const tags = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, "v"]));
    return expectRestError(() => kc.createEcKey(`tags-${s}`, { curve: "P-256", tags }), 400);
  });

  // Versions, get, get version, rotate.
  const vname = `versioned-${s}`;
  const first = await check("create first version of a key", () => kc.createEcKey(vname, { curve: "P-256" }));
  const second = await check("create second version of the same name", async () => {
    const k = await kc.createEcKey(vname, { curve: "P-256" });
    assert.notEqual(k.properties.version, need(first, "first version").properties.version);
    return k;
  });
  await check("getKey returns the latest version", async () => {
    const k = await kc.getKey(vname);
    assert.equal(k.properties.version, need(second, "second version").properties.version);
    assert.deepEqual(Buffer.from(k.key.x), Buffer.from(second.key.x));
  });
  await check("getKey with an explicit older version", async () => {
    const v1 = need(first, "first version");
    const k = await kc.getKey(vname, { version: v1.properties.version });
    assert.equal(k.id, v1.id);
    assert.deepEqual(Buffer.from(k.key.x), Buffer.from(v1.key.x));
  });
  const rotated = await check("rotateKey creates a new version with the same type", async () => {
    const k = await kc.rotateKey(vname);
    assertKeyShape(k, { vaultUrl, name: vname, kty: "EC" });
    assert.equal(k.key.crv, "P-256");
    assert.notEqual(k.properties.version, need(second, "second version").properties.version);
    return k;
  });
  await check("getKey after rotate returns the rotated version", async () => {
    const k = await kc.getKey(vname);
    assert.equal(k.properties.version, need(rotated, "rotated version").properties.version);
  });
  await check("listPropertiesOfKeyVersions lists every version (pages of 2)", async () => {
    const pages = await collectPages(kc.listPropertiesOfKeyVersions(vname), { maxPageSize: 2 });
    const items = pages.flat();
    assert.ok(pages.length >= 2, `expected >= 2 pages, got ${pages.length}`);
    for (const p of pages) assert.ok(p.length <= 2, `page of ${p.length} items with maxresults=2`);
    const versions = items.map((i) => i.version).sort();
    const expected = [first, second, rotated].map((k) => need(k, "a version").properties.version).sort();
    assert.deepEqual(versions, expected);
    for (const i of items) {
      assert.equal(i.name, vname);
      assert.equal(i.id, `${vaultUrl}/keys/${vname}/${i.version}`);
    }
  });

  // Update properties.
  await check("updateKeyProperties: tags, expiry, not-before on a given version", async () => {
    const v = need(rotated, "rotated version").properties.version;
    const exp = new Date(Math.floor(Date.now() / 1000 + 365 * 86400) * 1000);
    const nbf = new Date(Math.floor(Date.now() / 1000 - 3600) * 1000);
    const k = await kc.updateKeyProperties(vname, v, { tags: { env: "interop", n: "1" }, expiresOn: exp, notBefore: nbf });
    assert.deepEqual(k.properties.tags, { env: "interop", n: "1" });
    assert.equal(k.properties.expiresOn.getTime(), exp.getTime());
    assert.equal(k.properties.notBefore.getTime(), nbf.getTime());
    assert.equal(k.properties.version, v);
    const again = await kc.getKey(vname);
    assert.deepEqual(again.properties.tags, { env: "interop", n: "1" });
  });
  await check("updateKeyProperties: key_ops and enabled=false, then re-enable", async () => {
    const k = await kc.updateKeyProperties(vname, { keyOps: ["verify"], enabled: false });
    assert.deepEqual(k.keyOperations, ["verify"]);
    assert.equal(k.properties.enabled, false);
    const back = await kc.updateKeyProperties(vname, { keyOps: ["sign", "verify"], enabled: true });
    assert.equal(back.properties.enabled, true);
    assert.deepEqual(sortOps(back.keyOperations), ["sign", "verify"]);
  });

  // Paging over the key list: with maxresults (exposed as byPage maxPageSize) and with the default size.
  const pageNames = [];
  await check("create 14 keys for paging", async () => {
    for (let i = 0; i < 14; i++) {
      const name = `page-${i}-${s}`;
      await kc.createEcKey(name, { curve: "P-256" });
      pageNames.push(name);
    }
  });
  await check("listPropertiesOfKeys pages with maxresults=5 (nextLink followed)", async () => {
    const pages = await collectPages(kc.listPropertiesOfKeys(), { maxPageSize: 5 });
    assert.ok(pages.length >= 3, `expected >= 3 pages, got ${pages.length}`);
    for (const p of pages) assert.ok(p.length <= 5, `page of ${p.length} items with maxresults=5`);
    const names = pages.flat().map((p) => p.name);
    assert.equal(new Set(names).size, names.length, "a key appears twice across pages");
    for (const n of pageNames) assert.ok(names.includes(n), `${n} missing from the listing`);
    for (const item of pages.flat()) {
      assert.equal(item.id, `${vaultUrl}/keys/${item.name}`, "list items carry the base id");
      assert.equal(item.version, undefined);
    }
  });
  await check("listPropertiesOfKeys with default page size lists every key once", async () => {
    const items = await collect(kc.listPropertiesOfKeys());
    const names = items.map((p) => p.name);
    assert.equal(new Set(names).size, names.length);
    for (const n of [...pageNames, vname, `rsa2048-${s}`, `imported-rsa-${s}`]) assert.ok(names.includes(n), `${n} missing`);
    assert.ok(items.length > 25, `expected more than 25 keys across default pages, got ${items.length}`);
  });

  // api-versions the SDK can be pinned to and the emulator must accept.
  for (const serviceVersion of ["7.4", "7.5", "7.6"]) {
    await check(`KeyClient with serviceVersion ${serviceVersion}: create, get`, async () => {
      const c = new KeyClient(vaultUrl, ctx.credential, { ...ctx.clientOpts, serviceVersion });
      const name = `apiv-${serviceVersion.replace(".", "")}-${s}`;
      const k = await c.createEcKey(name, { curve: "P-256" });
      assert.equal((await c.getKey(name)).properties.version, k.properties.version);
    });
  }
  // Identifiers are case-insensitive.
  await check("getKey with the name in another case finds the same key", async () => {
    const k = await kc.getKey(vname.toUpperCase());
    assert.equal(k.properties.version, need(rotated, "rotated version").properties.version);
  });

  // Rotation policy (stored and validated) and backup/restore of every version.
  await check("getKeyRotationPolicy returns the service default for a key without one", async () => {
    const p = await kc.getKeyRotationPolicy(vname);
    assert.equal(p.id, `${vaultUrl}/keys/${vname}/rotationpolicy`);
    assert.ok(Array.isArray(p.lifetimeActions) && p.lifetimeActions.length >= 1, "no default lifetime action");
    assert.equal(p.lifetimeActions[0].action, "Notify");
    assert.equal(p.lifetimeActions[0].timeBeforeExpiry, "P30D");
  });
  await check("updateKeyRotationPolicy stores expiry and actions; GET returns them", async () => {
    const policy = { expiresIn: "P90D", lifetimeActions: [
      { action: "Rotate", timeAfterCreate: "P60D" }, { action: "Notify", timeBeforeExpiry: "P7D" }] };
    const p = await kc.updateKeyRotationPolicy(vname, policy);
    assert.equal(p.expiresIn, "P90D");
    const back = await kc.getKeyRotationPolicy(vname);
    assert.equal(back.expiresIn, "P90D");
    const acts = back.lifetimeActions.map((a) => `${a.action}:${a.timeAfterCreate || ""}:${a.timeBeforeExpiry || ""}`).sort();
    assert.deepEqual(acts, ["Notify::P7D", "Rotate:P60D:"]);
    assert.ok(back.updatedOn instanceof Date, "no updated time");
  });
  await check("updateKeyRotationPolicy with a malformed duration is refused (400)", () =>
    expectRestError(() => kc.updateKeyRotationPolicy(vname, { lifetimeActions: [{ action: "Rotate", timeAfterCreate: "sixty days" }] }), 400));
  await check("backupKey / purge / restoreKeyBackup brings back every version with its material", async () => {
    const bname = `backup-key-${s}`;
    const a = await kc.createEcKey(bname, { curve: "P-256", tags: { v: "1" } });
    const b = await kc.rotateKey(bname);
    const blob = await kc.backupKey(bname);
    assert.ok(blob && blob.length > 32, "empty backup blob");
    await expectRestError(() => kc.restoreKeyBackup(blob), 409, "Conflict");
    await (await kc.beginDeleteKey(bname, POLL)).pollUntilDone();
    await kc.purgeDeletedKey(bname);
    const restored = await kc.restoreKeyBackup(blob);
    assert.equal(restored.name, bname);
    assert.equal(restored.properties.version, b.properties.version);
    assert.deepEqual(Buffer.from(restored.key.x), Buffer.from(b.key.x));
    const old = await kc.getKey(bname, { version: a.properties.version });
    assert.deepEqual(Buffer.from(old.key.x), Buffer.from(a.key.x));
    assert.deepEqual(old.properties.tags, { v: "1" });
    // The private half came back too: the restored latest version signs, node:crypto verifies.
    const msg = Buffer.from("restored");
    const sig = (await new CryptographyClient(restored, ctx.credential, ctx.clientOpts).sign("ES256", digest("sha256", msg))).result;
    assert.ok(verify("sha256", msg, { key: publicKeyFromSdkJwk(restored.key), dsaEncoding: "ieee-p1363" }, Buffer.from(sig)));
  });
  await check("restoreKeyBackup of a forged blob is refused (400)", () =>
    expectRestError(() => kc.restoreKeyBackup(new Uint8Array(Buffer.from("not a backup blob at all, just text"))), 400));

  // Soft-delete, recover, purge.
  const dname = pageNames[0] || `page-0-${s}`;
  let deletedVersion;
  await check("beginDeleteKey poller completes with a DeletedKey", async () => {
    const poller = await kc.beginDeleteKey(dname, POLL);
    const del = await poller.pollUntilDone();
    assert.equal(del.name, dname);
    assert.equal(del.properties.recoveryId, `${vaultUrl}/deletedkeys/${dname}`);
    assert.ok(del.properties.deletedOn instanceof Date, "deletedDate missing");
    assert.ok(del.properties.scheduledPurgeDate > del.properties.deletedOn, "scheduledPurgeDate not after deletedDate");
    deletedVersion = del.properties.version;
  });
  await check("getKey of a deleted key is 404 KeyNotFound", () => expectRestError(() => kc.getKey(dname), 404, "KeyNotFound"));
  await check("getDeletedKey returns it", async () => {
    const del = await kc.getDeletedKey(dname);
    assert.equal(del.name, dname);
    assert.equal(del.properties.version, deletedVersion);
  });
  await check("listDeletedKeys includes it (pages of 1)", async () => {
    const pages = await collectPages(kc.listDeletedKeys(), { maxPageSize: 1 });
    const names = pages.flat().map((d) => d.name);
    assert.ok(names.includes(dname), `${dname} not listed`);
    const item = pages.flat().find((d) => d.name === dname);
    assert.equal(item.properties.recoveryId, `${vaultUrl}/deletedkeys/${dname}`);
  });
  await check("creating a deleted-but-recoverable name is 409 Conflict", () =>
    expectRestError(() => kc.createEcKey(dname, { curve: "P-256" }), 409, "Conflict"));
  await check("beginRecoverDeletedKey poller brings the key back", async () => {
    const poller = await kc.beginRecoverDeletedKey(dname, POLL);
    const rec = await poller.pollUntilDone();
    assert.equal(rec.name, dname);
    const k = await kc.getKey(dname);
    assert.equal(k.properties.version, deletedVersion);
  });
  await check("delete again and purgeDeletedKey", async () => {
    const poller = await kc.beginDeleteKey(dname, POLL);
    await poller.pollUntilDone();
    await kc.purgeDeletedKey(dname);
  });
  await check("getDeletedKey after purge is 404 KeyNotFound", () =>
    expectRestError(() => kc.getDeletedKey(dname), 404, "KeyNotFound"));
  await check("a purged name can be created again", async () => {
    const k = await kc.createEcKey(dname, { curve: "P-256" });
    assert.notEqual(k.properties.version, deletedVersion);
  });
}
