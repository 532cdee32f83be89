// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the tour sections: reading the emulator's ready file, converting the SDK's JsonWebKey
// (Uint8Array members) to a node:crypto KeyObject, digests, PKCS#12/PEM material via the openssl CLI.
import { createHash, createPublicKey, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function loadReady() {
  const file = process.env.INTEROP_READY_FILE;
  if (!file) throw new Error("INTEROP_READY_FILE is not set (run the tour through run.sh)");
  const ready = JSON.parse(readFileSync(file, "utf8"));
  for (const k of ["ca_file", "authority_host", "tenant_id", "client_id", "client_secret", "vaults"]) {
    if (ready[k] === undefined) throw new Error(`ready file ${file} lacks "${k}"`);
  }
  return ready;
}

export const b64u = (buf) => Buffer.from(buf).toString("base64url");

// Azure's curve names to node's JWK curve names (P-256K is secp256k1, RFC 8812).
const CURVES = { "P-256": "P-256", "P-384": "P-384", "P-521": "P-521", "P-256K": "secp256k1" };

// Public KeyObject from the JsonWebKey returned by KeyClient.getKey (kty RSA/RSA-HSM/EC/EC-HSM).
export function publicKeyFromSdkJwk(jwk) {
  if (!jwk || !jwk.kty) throw new Error("no JsonWebKey in the SDK result");
  if (jwk.kty.startsWith("RSA")) {
    if (!jwk.n || !jwk.e) throw new Error("RSA JsonWebKey without n/e");
    return createPublicKey({ key: { kty: "RSA", n: b64u(jwk.n), e: b64u(jwk.e) }, format: "jwk" });
  }
  if (jwk.kty.startsWith("EC")) {
    const crv = CURVES[jwk.crv];
    if (!crv) throw new Error(`unknown curve ${jwk.crv}`);
    return createPublicKey({ key: { kty: "EC", crv, x: b64u(jwk.x), y: b64u(jwk.y) }, format: "jwk" });
  }
  throw new Error(`no public key for kty ${jwk.kty}`);
}

// node's JWK export (base64url strings) to the SDK's JsonWebKey (Uint8Array members), for importKey.
export function sdkJwkFromNodeJwk(nodeJwk, extra = {}) {
  const out = { ...extra };
  for (const [k, v] of Object.entries(nodeJwk)) {
    if (k === "kty") out.kty = v;
    else if (k === "crv") out.crv = v === "secp256k1" ? "P-256K" : v;
    else if (typeof v === "string") out[k] = new Uint8Array(Buffer.from(v, "base64url"));
  }
  return out;
}

export function digest(hash, data) {
  return createHash(hash).update(data).digest();
}

export async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

export async function collectPages(pagedIterable, settings) {
  const pages = [];
  for await (const page of pagedIterable.byPage(settings)) pages.push(page);
  return pages;
}

export function uniqueSuffix() {
  return randomBytes(3).toString("hex");
}

// Runs openssl with arguments, feeding `input` on stdin; returns stdout as a Buffer. Errors carry stderr.
export function openssl(args, input) {
  try {
    return execFileSync("openssl", args, { input, stdio: ["pipe", "pipe", "pipe"], timeout: 30000 });
  } catch (e) {
    const stderr = e.stderr ? e.stderr.toString() : "";
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || e.message}`);
  }
}

// A self-signed certificate with its key, as PEM (key first, like Key Vault's PEM secrets) and as a
// password-less PKCS#12 (what Key Vault stores for application/x-pkcs12).
export function makeSelfSigned(subjectCn, { keySpec = "rsa:2048" } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "akv-interop-"));
  try {
    const keyFile = join(dir, "key.pem");
    const certFile = join(dir, "cert.pem");
    const newkey = keySpec.startsWith("ec:")
      ? ["-newkey", "ec", "-pkeyopt", `ec_paramgen_curve:${keySpec.slice(3)}`]
      : ["-newkey", keySpec];
    openssl(["req", "-x509", ...newkey, "-nodes", "-keyout", keyFile, "-out", certFile,
      "-subj", `/CN=${subjectCn}`, "-days", "30", "-sha256"]);
    const keyPem = readFileSync(keyFile, "utf8");
    const certPem = readFileSync(certFile, "utf8");
    const pfxFile = join(dir, "bundle.p12");
    openssl(["pkcs12", "-export", "-inkey", keyFile, "-in", certFile, "-out", pfxFile, "-passout", "pass:"]);
    const pfx = readFileSync(pfxFile);
    return { keyPem, certPem, pem: keyPem + certPem, pfx };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Parses a password-less PKCS#12 (bytes) into { keyPem, certPems[] } with the openssl CLI.
export function parsePkcs12(pfx) {
  const dir = mkdtempSync(join(tmpdir(), "akv-interop-"));
  try {
    const f = join(dir, "in.p12");
    writeFileSync(f, pfx);
    const out = openssl(["pkcs12", "-in", f, "-nodes", "-passin", "pass:"]).toString();
    return splitPem(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function splitPem(text) {
  const blocks = text.match(/-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/g) || [];
  const keyPem = blocks.find((b) => /PRIVATE KEY/.test(b));
  const certPems = blocks.filter((b) => /BEGIN CERTIFICATE/.test(b));
  return { keyPem, certPems };
}

export function spkiDer(keyObject) {
  return keyObject.export({ type: "spki", format: "der" });
}

// RSA private-key decryption with the openssl CLI. node:crypto refuses PKCS#1 v1.5 private decryption
// (CVE-2023-46809 hardening), so RSA1_5 ciphertexts are checked with openssl pkeyutl for every padding.
export function opensslRsaDecrypt(privateKeyObject, ciphertext, { padding, oaepHash }) {
  const dir = mkdtempSync(join(tmpdir(), "akv-interop-"));
  try {
    const keyFile = join(dir, "key.pem");
    writeFileSync(keyFile, privateKeyObject.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    const opts = padding === "pkcs1"
      ? ["-pkeyopt", "rsa_padding_mode:pkcs1"]
      : ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", `rsa_oaep_md:${oaepHash}`, "-pkeyopt", `rsa_mgf1_md:${oaepHash}`];
    return openssl(["pkeyutl", "-decrypt", "-inkey", keyFile, ...opts], ciphertext);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Signs a DER certificate signing request with a CA made by makeSelfSigned; returns the certificate (DER).
export function signCsr(csrDer, ca, days = 30) {
  const dir = mkdtempSync(join(tmpdir(), "akv-interop-"));
  try {
    const f = (n) => join(dir, n);
    writeFileSync(f("csr.der"), csrDer);
    writeFileSync(f("ca.pem"), ca.certPem);
    writeFileSync(f("ca.key"), ca.keyPem, { mode: 0o600 });
    openssl(["req", "-inform", "DER", "-in", f("csr.der"), "-out", f("csr.pem")]);
    openssl(["x509", "-req", "-in", f("csr.pem"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
      "-set_serial", "4242", "-days", String(days), "-sha256", "-outform", "DER", "-out", f("leaf.der")]);
    return readFileSync(f("leaf.der"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
