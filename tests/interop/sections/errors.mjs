// SPDX-License-Identifier: Apache-2.0
// Service errors as the SDK surfaces them: RestError with the HTTP status and the
// service's error.code.
import { randomBytes } from "node:crypto";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import { SecretClient } from "@azure/keyvault-secrets";
import { CertificateClient } from "@azure/keyvault-certificates";
import { assert, check, expectRestError, need } from "../lib/harness.mjs";
import { digest } from "../lib/util.mjs";
import { remote } from "./crypto.mjs";

export async function runErrors(ctx) {
  const kc = new KeyClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const sc = new SecretClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const cc = new CertificateClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const s = ctx.suffix;
  const md = digest("sha256", Buffer.from("errors"));

  await check("getKey of an unknown key: 404 KeyNotFound with a message", async () => {
    const err = await expectRestError(() => kc.getKey(`nosuchkey-${s}`), 404, "KeyNotFound");
    assert.ok(err.message && err.message.length > 5, "empty error message");
  });
  await check("getKey of an unknown version: 404 KeyNotFound", () =>
    expectRestError(() => kc.getKey(`rsa2048-${s}`, { version: "0123456789abcdef0123456789abcdef" }), 404, "KeyNotFound"));
  await check("getSecret of an unknown secret: 404 SecretNotFound", () =>
    expectRestError(() => sc.getSecret(`nosuchsecret-${s}`), 404, "SecretNotFound"));
  await check("getCertificate of an unknown certificate: 404 CertificateNotFound", () =>
    expectRestError(() => cc.getCertificate(`nosuchcert-${s}`), 404, "CertificateNotFound"));
  await check("getDeletedKey of a name never deleted: 404 KeyNotFound", () =>
    expectRestError(() => kc.getDeletedKey(`rsa2048-${s}`), 404, "KeyNotFound"));
  await check("sign on the Managed HSM with an unknown key: 404 KeyNotFound", async () => {
    const hc = new CryptographyClient(`${ctx.hsmUrl}/keys/nosuchkey-${s}/0123456789abcdef0123456789abcdef`,
      ctx.credential, ctx.clientOpts);
    await expectRestError(() => remote(hc).sign("ES256", md), 404, "KeyNotFound");
  });

  const name = `errors-rsa-${s}`;
  const key = await check("create RSA key for error checks", () => kc.createRsaKey(name, { keySize: 2048 }));
  const client = key ? new CryptographyClient(key, ctx.credential, ctx.clientOpts) : undefined;

  await check("sign with an unknown algorithm: 400 BadParameter", () =>
    expectRestError(() => need(client, "client").sign("RS999", md), 400, "BadParameter"));
  await check("sign with an EC algorithm on an RSA key: 400", () =>
    expectRestError(() => need(client, "client").sign("ES256", md), 400));
  await check("ES384 on a P-256 key (curve mismatch): 400 BadParameter", async () => {
    const k = await kc.createEcKey(`mismatch-${s}`, { curve: "P-256" });
    const ecc = new CryptographyClient(k, ctx.credential, ctx.clientOpts);
    await expectRestError(() => ecc.sign("ES384", digest("sha384", Buffer.from("x"))), 400, "BadParameter");
  });
  await check("sign RS256 with a 20-byte digest: 400", () =>
    expectRestError(() => need(client, "client").sign("RS256", randomBytes(20)), 400));
  await check("encrypt with an AES algorithm on an RSA key: 400", () =>
    expectRestError(() => remote(need(client, "client")).encrypt({ algorithm: "A256GCM", plaintext: randomBytes(16) }),
      400));
  await check("create a key with an invalid name: 400", () =>
    expectRestError(() => kc.createEcKey("bad_name.with.dots", { curve: "P-256" }), 400));
  await check("create an RSA key of an unsupported size: 400", () =>
    expectRestError(() => kc.createRsaKey(`badsize-${s}`, { keySize: 1000 }), 400));

  // The client below still holds the key as created (all operations allowed), so it sends the request and
  // the service has to refuse it.
  await check("decrypt with a key whose key_ops lack decrypt: 403 Forbidden", async () => {
    const k = need(key, "key");
    const ct = (await remote(need(client, "client")).encrypt({ algorithm: "RSA-OAEP", plaintext: randomBytes(16) })).result;
    await kc.updateKeyProperties(name, k.properties.version, { keyOps: ["sign", "verify"] });
    await expectRestError(() => client.decrypt("RSA-OAEP", ct), 403, "Forbidden");
    await expectRestError(() => remote(client).wrapKey("RSA-OAEP", randomBytes(16)), 403, "Forbidden");
  });
  await check("sign with a disabled key: 403 Forbidden", async () => {
    const k = need(key, "key");
    await kc.updateKeyProperties(name, k.properties.version, { enabled: false });
    await expectRestError(() => client.sign("RS256", md), 403, "Forbidden");
  });
  await check("re-enabled key signs again", async () => {
    const k = need(key, "key");
    await kc.updateKeyProperties(name, k.properties.version, { enabled: true });
    const r = await client.sign("RS256", md);
    assert.equal(r.result.length, 256);
  });
  await check("sign with an expired key: 403 Forbidden; verify still works (nbf/exp)", async () => {
    const ename = `expired-${s}`;
    const k = await kc.createEcKey(ename, { curve: "P-256" });
    const ecc = new CryptographyClient(k, ctx.credential, ctx.clientOpts);
    const sig = (await ecc.sign("ES256", md)).result;
    await kc.updateKeyProperties(ename, k.properties.version, { expiresOn: new Date(Date.now() - 3600_000) });
    // The client's cached copy has no expiry, so it sends the request.
    await expectRestError(() => ecc.sign("ES256", md), 403, "Forbidden");
    assert.equal((await ecc.verify("ES256", md, sig)).result, true);
  });
  await check("sign with a not-yet-valid key (nbf in the future): 403 Forbidden; verify still works", async () => {
    const nname = `notyet-${s}`;
    const k = await kc.createEcKey(nname, { curve: "P-256" });
    const ecc = new CryptographyClient(k, ctx.credential, ctx.clientOpts);
    const sig = (await ecc.sign("ES256", md)).result;
    await kc.updateKeyProperties(nname, k.properties.version, { notBefore: new Date(Date.now() + 3600_000) });
    await expectRestError(() => ecc.sign("ES256", md), 403, "Forbidden");
    assert.equal((await ecc.verify("ES256", md, sig)).result, true);
  });
}
