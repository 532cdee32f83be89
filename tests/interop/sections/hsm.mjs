// SPDX-License-Identifier: Apache-2.0
// Managed HSM: oct-HSM AES keys, AES-GCM/CBC/CBCPAD encrypt/decrypt, A*KW
// wrap/unwrap, random bytes, and HSM-backed RSA/EC keys. An imported AES key of known value lets
// node:crypto check the emulator's ciphertexts independently; @peculiar/attestation-marvell, a
// parser of the service's key attestation format (MRVL-1) written apart from this project, checks
// the emulator's attestation blobs against its per-run vendor root.
import "reflect-metadata"; // before @peculiar/attestation-marvell (tsyringe needs it)
import { readFileSync } from "node:fs";
import { createCipheriv, createDecipheriv, createHmac, randomBytes, webcrypto } from "node:crypto";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import { MarvellAttestationProvider } from "@peculiar/attestation-marvell";
import { X509Certificate } from "@peculiar/x509";
import { assert, check, expectRestError, need } from "../lib/harness.mjs";
import { digest, publicKeyFromSdkJwk } from "../lib/util.mjs";
import { assertKeyShape } from "./keys.mjs";
import { verify, constants } from "node:crypto";

const POLL = { intervalInMs: 250 };
const KW_IV = Buffer.from("A6A6A6A6A6A6A6A6", "hex"); // RFC 3394 default IV

function zeroPad16(buf) {
  const rem = buf.length % 16;
  return rem === 0 ? buf : Buffer.concat([buf, Buffer.alloc(16 - rem)]);
}

async function aesSuite(ctx, cc, bits, label) {
  const gcm = `A${bits}GCM`, cbc = `A${bits}CBC`, cbcpad = `A${bits}CBCPAD`, kw = `A${bits}KW`;
  const plaintext = randomBytes(45);
  const aad = Buffer.from(`aad-${ctx.suffix}`);
  await check(`${label} ${gcm}: encrypt (service IV) / decrypt with AAD`, async () => {
    const enc = await need(cc, "client").encrypt({ algorithm: gcm, plaintext, additionalAuthenticatedData: aad });
    assert.equal(enc.iv.length, 12, "GCM IV length");
    assert.equal(enc.authenticationTag.length, 16, "GCM tag length");
    assert.equal(enc.result.length, plaintext.length, "GCM ciphertext length");
    const dec = await cc.decrypt({ algorithm: gcm, ciphertext: enc.result, iv: enc.iv,
      authenticationTag: enc.authenticationTag, additionalAuthenticatedData: aad });
    assert.deepEqual(Buffer.from(dec.result), plaintext);
    return enc;
  });
  await check(`${label} ${gcm}: decrypt with a wrong tag fails`, async () => {
    const enc = await cc.encrypt({ algorithm: gcm, plaintext, additionalAuthenticatedData: aad });
    const tag = Buffer.from(enc.authenticationTag);
    tag[0] ^= 1;
    await assert.rejects(cc.decrypt({ algorithm: gcm, ciphertext: enc.result, iv: enc.iv, authenticationTag: tag,
      additionalAuthenticatedData: aad }), (e) => e.name === "RestError" && e.statusCode >= 400 && e.statusCode < 500);
  });
  await check(`${label} ${cbc}: encrypt / decrypt (block-aligned)`, async () => {
    const iv = randomBytes(16);
    const pt = randomBytes(64);
    const enc = await need(cc, "client").encrypt({ algorithm: cbc, plaintext: pt, iv });
    assert.equal(enc.result.length, 64);
    assert.deepEqual(Buffer.from(enc.iv), iv, "CBC IV not echoed");
    const dec = await cc.decrypt({ algorithm: cbc, ciphertext: enc.result, iv });
    assert.deepEqual(Buffer.from(dec.result), pt);
  });
  await check(`${label} ${cbcpad}: encrypt / decrypt (PKCS#7 padding)`, async () => {
    const iv = randomBytes(16);
    const enc = await need(cc, "client").encrypt({ algorithm: cbcpad, plaintext, iv });
    assert.equal(enc.result.length, 48, "45 bytes pad to 48");
    const dec = await cc.decrypt({ algorithm: cbcpad, ciphertext: enc.result, iv });
    assert.deepEqual(Buffer.from(dec.result), plaintext);
  });
  await check(`${label} ${kw}: wrapKey / unwrapKey`, async () => {
    const cek = randomBytes(32);
    const w = await need(cc, "client").wrapKey(kw, cek);
    assert.equal(w.result.length, 40, "RFC 3394 output is input + 8");
    const u = await cc.unwrapKey(kw, w.result);
    assert.deepEqual(Buffer.from(u.result), cek);
  });
}

export async function runHsm(ctx) {
  const hc = new KeyClient(ctx.hsmUrl, ctx.credential, ctx.clientOpts);
  const s = ctx.suffix;

  for (const bits of [128, 192, 256]) {
    const name = `aes${bits}-${s}`;
    const key = await check(`createOctKey ${bits} on the Managed HSM is oct-HSM`, async () => {
      const k = await hc.createOctKey(name, { keySize: bits, hsm: true });
      assertKeyShape(k, { vaultUrl: ctx.hsmUrl, name, kty: "oct-HSM" });
      return k;
    });
    const cc = key ? new CryptographyClient(key, ctx.credential, ctx.clientOpts) : undefined;
    await aesSuite(ctx, cc, bits, "created");
  }

  // Known key: node:crypto computes or checks the same ciphertexts.
  const k = randomBytes(32);
  const kname = `aes-known-${s}`;
  const known = await check("importKey oct-HSM 256 with a known value", async () => {
    const key = await hc.importKey(kname, { kty: "oct-HSM", k: new Uint8Array(k),
      keyOps: ["encrypt", "decrypt", "wrapKey", "unwrapKey"] });
    assertKeyShape(key, { vaultUrl: ctx.hsmUrl, name: kname, kty: "oct-HSM" });
    return key;
  });
  const kc = known ? new CryptographyClient(known, ctx.credential, ctx.clientOpts) : undefined;
  await aesSuite(ctx, kc, 256, "imported");
  const pt = randomBytes(45);
  const aad = Buffer.from("known-aad");
  await check("A256GCM: service ciphertext decrypts with node:crypto", async () => {
    const enc = await need(kc, "client").encrypt({ algorithm: "A256GCM", plaintext: pt, additionalAuthenticatedData: aad });
    const d = createDecipheriv("aes-256-gcm", k, Buffer.from(enc.iv));
    d.setAAD(aad);
    d.setAuthTag(Buffer.from(enc.authenticationTag));
    assert.deepEqual(Buffer.concat([d.update(Buffer.from(enc.result)), d.final()]), pt);
  });
  await check("A256GCM: node:crypto ciphertext decrypts in the service", async () => {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", k, iv);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(pt), c.final()]);
    const dec = await need(kc, "client").decrypt({ algorithm: "A256GCM", ciphertext: ct, iv,
      authenticationTag: c.getAuthTag(), additionalAuthenticatedData: aad });
    assert.deepEqual(Buffer.from(dec.result), pt);
  });
  await check("A256CBC: service zero-pads an unaligned plaintext, node:crypto agrees", async () => {
    const iv = randomBytes(16);
    const enc = await need(kc, "client").encrypt({ algorithm: "A256CBC", plaintext: pt, iv });
    const d = createDecipheriv("aes-256-cbc", k, iv).setAutoPadding(false);
    assert.deepEqual(Buffer.concat([d.update(Buffer.from(enc.result)), d.final()]), zeroPad16(pt));
  });
  await check("A256CBCPAD: service ciphertext is PKCS#7 CBC (node:crypto decrypts)", async () => {
    const iv = randomBytes(16);
    const enc = await need(kc, "client").encrypt({ algorithm: "A256CBCPAD", plaintext: pt, iv });
    const d = createDecipheriv("aes-256-cbc", k, iv);
    assert.deepEqual(Buffer.concat([d.update(Buffer.from(enc.result)), d.final()]), pt);
  });
  await check("A256CBCPAD: node:crypto ciphertext decrypts in the service", async () => {
    const iv = randomBytes(16);
    const c = createCipheriv("aes-256-cbc", k, iv);
    const ct = Buffer.concat([c.update(pt), c.final()]);
    const dec = await need(kc, "client").decrypt({ algorithm: "A256CBCPAD", ciphertext: ct, iv });
    assert.deepEqual(Buffer.from(dec.result), pt);
  });
  await check("A256KW: service wrap equals RFC 3394 (node:crypto id-aes256-wrap) and unwraps node's", async () => {
    const cek = randomBytes(24);
    const w = await need(kc, "client").wrapKey("A256KW", cek);
    const c = createCipheriv("id-aes256-wrap", k, KW_IV);
    const expected = Buffer.concat([c.update(cek), c.final()]);
    assert.deepEqual(Buffer.from(w.result), expected);
    const u = await kc.unwrapKey("A256KW", expected);
    assert.deepEqual(Buffer.from(u.result), cek);
  });

  await check("CKM_AES_KEY_WRAP equals RFC 3394, CKM_AES_KEY_WRAP_PAD equals RFC 5649 (node:crypto)", async () => {
    const cek = randomBytes(32);
    const w = await need(kc, "client").wrapKey("CKM_AES_KEY_WRAP", cek);
    const c = createCipheriv("id-aes256-wrap", k, KW_IV);
    assert.deepEqual(Buffer.from(w.result), Buffer.concat([c.update(cek), c.final()]));
    assert.deepEqual(Buffer.from((await kc.unwrapKey("CKM_AES_KEY_WRAP", w.result)).result), cek);
    const odd = randomBytes(20);
    const wp = await kc.wrapKey("CKM_AES_KEY_WRAP_PAD", odd);
    assert.equal(wp.result.length, 32, "RFC 5649 output of 20 bytes is 32 bytes");
    const cp = createCipheriv("id-aes256-wrap-pad", k, Buffer.from("A65959A6", "hex"));
    assert.deepEqual(Buffer.from(wp.result), Buffer.concat([cp.update(odd), cp.final()]));
    assert.deepEqual(Buffer.from((await kc.unwrapKey("CKM_AES_KEY_WRAP_PAD", wp.result)).result), odd);
  });

  // HS256/384/512 on oct-HSM keys: in the swagger, service semantics unconfirmed.
  // Checked: the service verifies its own MAC and rejects a tampered one, and the MAC is HMAC(k, value).
  for (const [alg, hash] of [["HS256", "sha256"], ["HS384", "sha384"], ["HS512", "sha512"]]) {
    await check(`${alg} on the imported oct-HSM key: sign/verify, equals node HMAC`, async () => {
      const name = `hmac-${alg.toLowerCase()}-${s}`;
      const key = await hc.importKey(name, { kty: "oct-HSM", k: new Uint8Array(k), keyOps: ["sign", "verify"] });
      const mc = new CryptographyClient(key, ctx.credential, ctx.clientOpts);
      const md = digest(hash, Buffer.from(`hmac ${alg}`));
      const mac = Buffer.from((await mc.sign(alg, md)).result);
      assert.deepEqual(mac, createHmac(hash, k).update(md).digest());
      assert.equal((await mc.verify(alg, md, mac)).result, true);
      mac[0] ^= 1;
      assert.equal((await mc.verify(alg, md, mac)).result, false);
    });
  }

  await check("getRandomBytes returns the requested count, fresh each time", async () => {
    const a = await hc.getRandomBytes(32);
    const b = await hc.getRandomBytes(32);
    assert.equal(a.length, 32);
    assert.equal(b.length, 32);
    assert.notDeepEqual(Buffer.from(a), Buffer.from(b));
    const max = await hc.getRandomBytes(128);
    assert.equal(max.length, 128);
  });

  // HSM-backed asymmetric keys on the Managed HSM.
  for (const [kind, create, alg, hash, len] of [
    ["RSA-HSM", (n) => hc.createRsaKey(n, { hsm: true, keySize: 2048 }), "PS256", "sha256", 256],
    ["EC-HSM", (n) => hc.createEcKey(n, { hsm: true, curve: "P-384" }), "ES384", "sha384", 96],
  ]) {
    await check(`${kind} key on the Managed HSM signs; node:crypto verifies`, async () => {
      const name = `hsm-${kind.toLowerCase()}-${s}`;
      const key = await create(name);
      assertKeyShape(key, { vaultUrl: ctx.hsmUrl, name, kty: kind });
      const msg = Buffer.from(`hsm ${kind}`);
      const cc = new CryptographyClient(key, ctx.credential, ctx.clientOpts);
      const r = await cc.sign(alg, digest(hash, msg));
      assert.equal(r.result.length, len);
      const pub = publicKeyFromSdkJwk((await hc.getKey(name)).key);
      const opts = kind === "EC-HSM" ? { key: pub, dsaEncoding: "ieee-p1363" }
        : { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST };
      assert.ok(verify(hash, msg, opts, Buffer.from(r.result)), "node:crypto rejected the signature");
    });
  }

  // Without a version this SDK (template keys/{key-name}{/key-version}/attestation) asks for
  // keys/{name}/attestation; SDKs whose template is keys/{key-name}/{key-version}/attestation send
  // keys/{name}//attestation, which test-functional.sh checks against the emulator directly.
  await check("getKeyAttestation without a version: the latest version's attestation", async () => {
    const name = `hsm-rsa-hsm-${s}`;
    const latest = await hc.getKeyAttestation(name);
    assert.equal(latest.name, name);
    assert.equal(latest.properties.version, (await hc.getKey(name)).properties.version);
    const att = latest.properties.attestation;
    assert.ok(att && att.certificatePemFile?.length > 0, "no attestation certificates");
    assert.ok(att.privateKeyAttestation?.length > 0 && att.publicKeyAttestation?.length > 0, "no attestation blobs");
    const pinned = await hc.getKeyAttestation(name, { version: latest.properties.version });
    assert.deepEqual(Buffer.from(pinned.properties.attestation.privateKeyAttestation),
      Buffer.from(att.privateKeyAttestation), "the version's attestation differs from the latest's");
  });

  // The service's attestation format, checked by a third party's parser: each blob's signature
  // verifies through the vendor's partition certificate and the HSM card certificate to the
  // emulator's per-run vendor root (Microsoft's self-signed root is trusted, not an intermediate:
  // the library's chain walk would loop on it), the attested public key is the vault key's (RSA
  // n/e: the library drops the modulus' leading zero byte; EC x/y), CKA_ID is the versioned kid;
  // a flipped signed byte (in CKA_ID) and another root in the vendor root's place fail.
  for (const [kind, name, alg] of [
    ["RSA-HSM", `hsm-rsa-hsm-${s}`, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }],
    ["EC-HSM", `hsm-ec-hsm-${s}`, { name: "ECDSA", namedCurve: "P-384" }],
  ]) {
    await check(`${kind} getKeyAttestation: MRVL-1 blobs verify with @peculiar/attestation-marvell`, async () => {
      const rootFile = need(ctx.ready.attestation_vendor_root, "attestation_vendor_root in the ready file");
      const got = await hc.getKeyAttestation(name);
      const att = got.properties.attestation;
      assert.equal(att.version, "MRVL-1");
      const certs = Buffer.from(att.certificatePemFile).toString("utf8")
        .match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g).map((p) => new X509Certificate(p));
      assert.equal(certs.length, 4, "certificatePemFile: card, vendor partition, Microsoft root and partition");
      const msRoot = certs.filter((c) => c.subject === c.issuer);
      assert.equal(msRoot.length, 1, "one self-signed certificate (Microsoft's partition root)");
      const vendorRoot = new X509Certificate(readFileSync(rootFile, "utf8"));
      const provider = new MarvellAttestationProvider({ trustedCerts: [vendorRoot, msRoot[0]] });
      const intermediates = certs.filter((c) => c.subject !== c.issuer);
      const jwk = (await hc.getKey(name)).key;
      const b64u = (u8) => Buffer.from(u8).toString("base64url");
      for (const blob of [att.privateKeyAttestation, att.publicKeyAttestation]) {
        const a = await provider.read(Buffer.from(blob));
        const r = await provider.verify({ attestation: a, intermediateCerts: intermediates });
        assert.equal(r.status, true, `the blob does not verify: ${r.error?.message}`);
        const pub = await webcrypto.subtle.exportKey("jwk", await a.publicKey.export(alg, ["verify"]));
        if (kind === "RSA-HSM") {
          assert.equal(pub.n, b64u(jwk.n), "the attested modulus is not the key's");
          assert.equal(pub.e, b64u(jwk.e), "the attested exponent is not the key's");
        } else {
          assert.equal(pub.x, b64u(jwk.x), "the attested point (x) is not the key's");
          assert.equal(pub.y, b64u(jwk.y), "the attested point (y) is not the key's");
        }
        assert.equal(a.metadata.attestationData.firstKey.attributes.OBJ_ATTR_ID, got.id);
        const bad = Buffer.from(blob);
        const at = bad.indexOf(Buffer.from(got.id));
        assert.ok(at > 16, "the blob holds the kid as text");
        bad[at + 8] ^= 1; // "https://" -> a signed byte of CKA_ID: still parses
        const rb = await provider.verify({ attestation: await provider.read(bad), intermediateCerts: intermediates });
        assert.equal(rb.status, false, "a blob with a flipped signed byte verifies");
      }
      // Another root in the vendor root's place (the emulator's TLS CA): the chain fails.
      const wrongRoot = new X509Certificate(readFileSync(ctx.ready.ca_file, "utf8"));
      const wrong = new MarvellAttestationProvider({ trustedCerts: [wrongRoot, msRoot[0]] });
      const rw = await wrong.verify({ attestation: await wrong.read(Buffer.from(att.privateKeyAttestation)),
        intermediateCerts: intermediates });
      assert.equal(rw.status, false, "the blob verifies against another vendor root");
    });
  }

  await check("Managed HSM key delete (poller), getDeletedKey, purge", async () => {
    const name = `aes128-${s}`;
    const poller = await hc.beginDeleteKey(name, POLL);
    const del = await poller.pollUntilDone();
    assert.equal(del.properties.recoveryId, `${ctx.hsmUrl}/deletedkeys/${name}`);
    assert.equal((await hc.getDeletedKey(name)).name, name);
    await hc.purgeDeletedKey(name);
    await expectRestError(() => hc.getDeletedKey(name), 404);
  });
}
