// SPDX-License-Identifier: Apache-2.0
// CryptographyClient against vault keys: sign/verify with every RSA and EC algorithm,
// each signature also verified with node:crypto from the JWK that getKey returned; encrypt/decrypt and
// wrap/unwrap round trips for RSA1_5, RSA-OAEP and RSA-OAEP-256, cross-checked with node:crypto.
import { constants, generateKeyPairSync, publicDecrypt, publicEncrypt, randomBytes, verify } from "node:crypto";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import { assert, check, need } from "../lib/harness.mjs";
import { digest, opensslRsaDecrypt, publicKeyFromSdkJwk, sdkJwkFromNodeJwk, spkiDer } from "../lib/util.mjs";

const HASH = { 256: "sha256", 384: "sha384", 512: "sha512" };
const RSA_SIGN = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
const EC_SIGN = [
  { alg: "ES256", crv: "P-256", len: 64, hash: "sha256" },
  { alg: "ES384", crv: "P-384", len: 96, hash: "sha384" },
  { alg: "ES512", crv: "P-521", len: 132, hash: "sha512" },
  { alg: "ES256K", crv: "P-256K", len: 64, hash: "sha256" },
];
const RSA_ENC = [
  { alg: "RSA1_5", padding: constants.RSA_PKCS1_PADDING, cli: "pkcs1" },
  { alg: "RSA-OAEP", padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1", cli: "oaep" },
  { alg: "RSA-OAEP-256", padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256", cli: "oaep" },
];

// The SDK's CryptographyClient does RSA encrypt/wrap locally once it holds the public key (hybrid mode).
// To exercise the emulator's /encrypt and /wrapkey too, the client's own remote provider (the code path the
// SDK uses when it cannot do the operation locally) is called directly.
export function remote(cc) {
  const p = cc.remoteProvider;
  if (!p) throw new Error("CryptographyClient has no remote provider (SDK internals changed?)");
  return p;
}

function nodeVerify(alg, hash, pub, message, signature) {
  if (alg.startsWith("ES")) return verify(hash, message, { key: pub, dsaEncoding: "ieee-p1363" }, signature);
  if (alg.startsWith("PS")) {
    // JWA (RFC 7518 §3.5): PSS with MGF1 of the same hash and a salt as long as the hash.
    return verify(hash, message, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
  }
  return verify(hash, message, { key: pub, padding: constants.RSA_PKCS1_PADDING }, signature);
}

async function signVerifySuite(ctx, kc, keyName, alg, hash, sigLen, expectedPub) {
  const message = Buffer.from(`interop ${alg} ${ctx.suffix}`);
  const md = digest(hash, message);
  let cc, pub, sig;
  await check(`${alg}: sign a digest`, async () => {
    const key = await kc.getKey(keyName);
    pub = publicKeyFromSdkJwk(key.key);
    if (expectedPub) assert.deepEqual(spkiDer(pub), spkiDer(expectedPub), "getKey public key differs from the imported one");
    cc = new CryptographyClient(key, ctx.credential, ctx.clientOpts);
    const r = await cc.sign(alg, md);
    assert.equal(r.algorithm, alg);
    assert.equal(r.result.length, sigLen, "signature length");
    assert.equal(r.keyID, key.id);
    sig = Buffer.from(r.result);
  });
  await check(`${alg}: signature verifies with node:crypto from the JWK`, () => {
    assert.ok(nodeVerify(alg, hash, need(pub, "public key"), message, need(sig, "signature")),
      "node:crypto rejected the emulator's signature");
  });
  await check(`${alg}: verify (service) accepts the signature`, async () => {
    const r = await need(cc, "client").verify(alg, md, need(sig, "signature"));
    assert.equal(r.result, true);
  });
  await check(`${alg}: verify (service) rejects a tampered signature`, async () => {
    const bad = Buffer.from(need(sig, "signature"));
    bad[bad.length >> 1] ^= 0x01;
    const r = await need(cc, "client").verify(alg, md, bad);
    assert.equal(r.result, false);
  });
  await check(`${alg}: verify (service) rejects another digest`, async () => {
    const r = await need(cc, "client").verify(alg, digest(hash, Buffer.from("something else")), need(sig, "signature"));
    assert.equal(r.result, false);
  });
}

export async function runCrypto(ctx) {
  const kc = new KeyClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const s = ctx.suffix;

  // RSA: a generated key and an imported key whose private half the tour knows.
  const rsaName = `crypto-rsa-${s}`;
  await check("create RSA 2048 key for crypto", () => kc.createRsaKey(rsaName, { keySize: 2048 }));
  const known = generateKeyPairSync("rsa", { modulusLength: 3072 });
  const knownName = `crypto-known-${s}`;
  await check("import RSA 3072 key with known private half", () =>
    kc.importKey(knownName, sdkJwkFromNodeJwk(known.privateKey.export({ format: "jwk" }))));

  for (const alg of RSA_SIGN) {
    await signVerifySuite(ctx, kc, rsaName, alg, HASH[alg.slice(2)], 256);
  }
  for (const alg of ["RS256", "PS384"]) {
    await signVerifySuite(ctx, kc, knownName, alg, HASH[alg.slice(2)], 384, known.publicKey);
  }
  for (const { alg, crv, len, hash } of EC_SIGN) {
    const name = `crypto-${alg.toLowerCase()}-${s}`;
    await check(`create EC ${crv} key for ${alg}`, () => kc.createEcKey(name, { curve: crv }));
    await signVerifySuite(ctx, kc, name, alg, hash, len);
  }

  await check("signData/verifyData (SDK hashes) RS256 and ES256", async () => {
    const data = Buffer.from(`sign data ${s}`);
    for (const [name, alg] of [[rsaName, "RS256"], [`crypto-es256-${s}`, "ES256"]]) {
      const key = await kc.getKey(name);
      const cc = new CryptographyClient(key, ctx.credential, ctx.clientOpts);
      const r = await cc.signData(alg, data);
      assert.ok(nodeVerify(alg, "sha256", publicKeyFromSdkJwk(key.key), data, Buffer.from(r.result)), `${alg} signData`);
      assert.equal((await cc.verifyData(alg, data, r.result)).result, true);
    }
  });

  // RSNULL: PKCS#1 v1.5 over caller-supplied bytes, no DigestInfo added. Over a SHA-256 DigestInfo it
  // must equal the (deterministic) RS256 signature of the same digest.
  await check("RSNULL over a DigestInfo equals RS256; node:crypto recovers the DigestInfo", async () => {
    const key = await kc.getKey(rsaName);
    const cc = new CryptographyClient(key, ctx.credential, ctx.clientOpts);
    const md = digest("sha256", Buffer.from(`rsnull ${s}`));
    const digestInfo = Buffer.concat([Buffer.from("3031300d060960864801650304020105000420", "hex"), md]);
    const raw = Buffer.from((await cc.sign("RSNULL", digestInfo)).result);
    const rs256 = Buffer.from((await cc.sign("RS256", md)).result);
    assert.deepEqual(raw, rs256, "RSNULL(DigestInfo) differs from RS256");
    const recovered = publicDecrypt({ key: publicKeyFromSdkJwk(key.key), padding: constants.RSA_PKCS1_PADDING }, raw);
    assert.deepEqual(recovered, digestInfo);
    assert.equal((await cc.verify("RSNULL", digestInfo, raw)).result, true);
  });

  // Encryption and key wrapping.
  let rsaKey, cc;
  await check("CryptographyClient for the RSA key", async () => {
    rsaKey = await kc.getKey(rsaName);
    cc = new CryptographyClient(rsaKey, ctx.credential, ctx.clientOpts);
  });
  for (const { alg, padding, oaepHash, cli } of RSA_ENC) {
    const plaintext = randomBytes(32);
    await check(`${alg}: service encrypt, service decrypt`, async () => {
      const enc = await remote(need(cc, "client")).encrypt({ algorithm: alg, plaintext });
      assert.equal(enc.result.length, 256, "ciphertext length");
      const dec = await cc.decrypt({ algorithm: alg, ciphertext: enc.result });
      assert.deepEqual(Buffer.from(dec.result), plaintext);
      assert.equal(dec.algorithm, alg);
    });
    await check(`${alg}: SDK encrypt (local where supported), service decrypt`, async () => {
      const enc = await need(cc, "client").encrypt(alg, plaintext);
      const dec = await cc.decrypt(alg, enc.result);
      assert.deepEqual(Buffer.from(dec.result), plaintext);
    });
    await check(`${alg}: node:crypto encrypt with the JWK, service decrypt`, async () => {
      const ct = publicEncrypt({ key: publicKeyFromSdkJwk(need(rsaKey, "key").key), padding, oaepHash }, plaintext);
      const dec = await cc.decrypt(alg, ct);
      assert.deepEqual(Buffer.from(dec.result), plaintext);
    });
    await check(`${alg}: service encrypt, openssl decrypts with the imported private key`, async () => {
      const kk = await kc.getKey(knownName);
      const kcc = new CryptographyClient(kk, ctx.credential, ctx.clientOpts);
      const enc = await remote(kcc).encrypt({ algorithm: alg, plaintext });
      assert.equal(enc.result.length, 384);
      const pt = opensslRsaDecrypt(known.privateKey, Buffer.from(enc.result), { padding: cli, oaepHash });
      assert.deepEqual(pt, plaintext);
    });
    const cek = randomBytes(32);
    await check(`${alg}: service wrapKey, service unwrapKey`, async () => {
      const w = await remote(need(cc, "client")).wrapKey(alg, cek);
      assert.equal(w.result.length, 256);
      const u = await cc.unwrapKey(alg, w.result);
      assert.deepEqual(Buffer.from(u.result), cek);
    });
    await check(`${alg}: SDK wrapKey, service unwrapKey`, async () => {
      const w = await need(cc, "client").wrapKey(alg, cek);
      const u = await cc.unwrapKey(alg, w.result);
      assert.deepEqual(Buffer.from(u.result), cek);
    });
    await check(`${alg}: node:crypto wrap with the JWK, service unwrapKey`, async () => {
      const w = publicEncrypt({ key: publicKeyFromSdkJwk(need(rsaKey, "key").key), padding, oaepHash }, cek);
      const u = await cc.unwrapKey(alg, w);
      assert.deepEqual(Buffer.from(u.result), cek);
    });
  }

  await check("RSA-OAEP-256: largest plaintext for a 2048-bit key (k-66 = 190 bytes) round-trips", async () => {
    const pt = randomBytes(190);
    const enc = await remote(need(cc, "client")).encrypt({ algorithm: "RSA-OAEP-256", plaintext: pt });
    const dec = await cc.decrypt({ algorithm: "RSA-OAEP-256", ciphertext: enc.result });
    assert.deepEqual(Buffer.from(dec.result), pt);
  });

  // Many requests in flight on the SDK's keep-alive connections (the emulator serves one thread per connection).
  await check("32 concurrent signs (ES256, PS256) all verify with node:crypto", async () => {
    const ek = await kc.getKey(`crypto-es256-${s}`);
    const rk = await kc.getKey(rsaName);
    const jobs = [];
    for (let i = 0; i < 16; i++) {
      for (const [key, alg] of [[ek, "ES256"], [rk, "PS256"]]) {
        jobs.push((async () => {
          const msg = Buffer.from(`concurrent ${alg} ${i}`);
          const c = new CryptographyClient(key, ctx.credential, ctx.clientOpts);
          const r = await c.sign(alg, digest("sha256", msg));
          return nodeVerify(alg, "sha256", publicKeyFromSdkJwk(key.key), msg, Buffer.from(r.result));
        })());
      }
    }
    const results = await Promise.all(jobs);
    assert.equal(results.filter(Boolean).length, 32, "some concurrent signatures did not verify");
  });
  await check("20 concurrent key creations get distinct names and versions", async () => {
    const keys = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      kc.createEcKey(`concurrent-${i}-${s}`, { curve: "P-256" })));
    assert.equal(new Set(keys.map((k) => k.id)).size, 20);
    assert.equal(new Set(keys.map((k) => k.properties.version)).size, 20);
  });
}
