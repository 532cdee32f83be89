// SPDX-License-Identifier: Apache-2.0
// CertificateClient on the vault: create with the self-signed default policy
// (poller), get, versions, list, policy get/update, import of PEM and PKCS#12, the managed key and secret
// of the same name, soft-delete poller, recover, purge.
import { X509Certificate, createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { CertificateClient, DefaultCertificatePolicy } from "@azure/keyvault-certificates";
import { KeyClient } from "@azure/keyvault-keys";
import { SecretClient } from "@azure/keyvault-secrets";
import { assert, check, expectRestError, need } from "../lib/harness.mjs";
import {
  collect, digest, makeSelfSigned, parsePkcs12, publicKeyFromSdkJwk, signCsr, spkiDer, splitPem,
} from "../lib/util.mjs";

const VERSION_RE = /^[0-9a-f]{32}$/;
const POLL = { intervalInMs: 250 };

function pemToDer(pem) {
  return new X509Certificate(pem).raw;
}

// The private key belongs to the certificate: sign with one, verify with the other.
function assertKeyPair(privatePem, cert) {
  const msg = Buffer.from("pair check");
  const sig = sign("sha256", msg, createPrivateKey(privatePem));
  assert.ok(verify("sha256", msg, cert.publicKey, sig), "private key does not match the certificate");
}

function assertCertShape(c, { vaultUrl, name }) {
  assert.equal(c.name, name);
  const v = c.properties.version;
  assert.match(v, VERSION_RE);
  assert.equal(c.properties.id, `${vaultUrl}/certificates/${name}/${v}`);
  assert.equal(c.keyId, `${vaultUrl}/keys/${name}/${v}`, "kid does not share the certificate version");
  assert.equal(c.secretId, `${vaultUrl}/secrets/${name}/${v}`, "sid does not share the certificate version");
  assert.ok(c.cer && c.cer.length > 100, "no cer");
  const x = new X509Certificate(Buffer.from(c.cer));
  assert.deepEqual(Buffer.from(c.properties.x509Thumbprint), digest("sha1", Buffer.from(c.cer)), "x5t is not SHA-1 of cer");
  assert.equal(c.properties.notBefore.getTime(), new Date(x.validFrom).getTime(), "nbf differs from the X.509 validity");
  assert.equal(c.properties.expiresOn.getTime(), new Date(x.validTo).getTime(), "exp differs from the X.509 validity");
  return x;
}

export async function runCertificates(ctx) {
  const cc = new CertificateClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const kc = new KeyClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const sc = new SecretClient(ctx.vaultUrl, ctx.credential, ctx.clientOpts);
  const s = ctx.suffix;
  const vaultUrl = ctx.vaultUrl;
  const name = `cert-${s}`;

  const created = await check("beginCreateCertificate (default self-signed policy) poller completes", async () => {
    const poller = await cc.beginCreateCertificate(name, DefaultCertificatePolicy, POLL);
    const op = poller.getOperationState();
    assert.ok(op, "no operation state");
    const c = await poller.pollUntilDone();
    const x = assertCertShape(c, { vaultUrl, name });
    assert.match(x.subject, /^CN=MyCert$/i);
    assert.equal(x.issuer, x.subject, "not self-signed");
    assert.ok(x.verify(x.publicKey), "self-signature does not verify");
    return c;
  });
  await check("getCertificateOperation reports completed", async () => {
    const poller = await cc.getCertificateOperation(name);
    const op = poller.getOperationState().certificateOperation;
    assert.equal(op.status, "completed");
    assert.equal(op.issuerName, "Self");
  });
  await check("getCertificate returns the certificate with its policy", async () => {
    const c = await cc.getCertificate(name);
    assertCertShape(c, { vaultUrl, name });
    assert.deepEqual(Buffer.from(c.cer), Buffer.from(need(created, "created").cer));
    assert.equal(c.policy.issuerName, "Self");
    assert.match(c.policy.subject, /^cn=MyCert$/i);
  });
  const second = await check("a second create makes a new version", async () => {
    const c = await (await cc.beginCreateCertificate(name, DefaultCertificatePolicy, POLL)).pollUntilDone();
    assert.notEqual(c.properties.version, need(created, "created").properties.version);
    return c;
  });
  await check("getCertificateVersion returns the older version", async () => {
    const v1 = need(created, "created");
    const c = await cc.getCertificateVersion(name, v1.properties.version);
    assert.equal(c.properties.id, v1.properties.id);
    assert.deepEqual(Buffer.from(c.cer), Buffer.from(v1.cer));
  });
  // @azure/keyvault-certificates 4.10.3 does not pass byPage's maxPageSize on as maxresults (unlike the keys
  // and secrets SDKs), so paging of certificate lists is left to the keys and secrets sections.
  await check("listPropertiesOfCertificateVersions lists both versions", async () => {
    const items = await collect(cc.listPropertiesOfCertificateVersions(name));
    const versions = items.map((p) => p.version).sort();
    assert.deepEqual(versions, [created, second].map((c) => need(c, "version").properties.version).sort());
    for (const i of items) assert.equal(i.id, `${vaultUrl}/certificates/${name}/${i.version}`);
  });
  await check("listPropertiesOfCertificates includes it with thumbprint", async () => {
    const items = await collect(cc.listPropertiesOfCertificates());
    const item = items.find((i) => i.name === name);
    assert.ok(item, `${name} not listed`);
    assert.equal(item.id, `${vaultUrl}/certificates/${name}`);
    assert.deepEqual(Buffer.from(item.x509Thumbprint), Buffer.from(need(second, "second").properties.x509Thumbprint));
  });
  await check("getCertificatePolicy", async () => {
    const p = await cc.getCertificatePolicy(name);
    assert.equal(p.issuerName, "Self");
    assert.match(p.subject, /^cn=MyCert$/i);
    assert.equal(p.contentType, "application/x-pkcs12");
    assert.ok(p.keyType === "RSA" || p.keyType === "RSA-HSM", `keyType ${p.keyType}`);
  });
  await check("updateCertificatePolicy changes subject and validity", async () => {
    const cur = await cc.getCertificatePolicy(name);
    // 4.10.3 resolves updateCertificatePolicy with an empty policy (its parsedBody is never assigned), so the
    // service's answer is checked with a fresh GET.
    await cc.updateCertificatePolicy(name, { ...cur, subject: "CN=updated-interop", validityInMonths: 6 });
    const back = await cc.getCertificatePolicy(name);
    assert.match(back.subject, /^CN=updated-interop$/i);
    assert.equal(back.validityInMonths, 6);
  });

  // The managed key and secret behind the certificate.
  await check("KeyClient reads the managed key: same version, public key of the certificate", async () => {
    const c = need(second, "second");
    const k = await kc.getKey(name);
    assert.equal(k.properties.version, c.properties.version);
    assert.equal(k.properties.managed, true, "key not marked managed");
    const x = new X509Certificate(Buffer.from(c.cer));
    assert.deepEqual(spkiDer(publicKeyFromSdkJwk(k.key)), spkiDer(x.publicKey));
  });
  await check("SecretClient reads the managed secret: password-less PKCS#12 with key and certificate", async () => {
    const c = need(second, "second");
    const sec = await sc.getSecret(name);
    assert.equal(sec.properties.version, c.properties.version);
    assert.equal(sec.properties.managed, true, "secret not marked managed");
    assert.equal(sec.properties.contentType, "application/x-pkcs12");
    assert.equal(sec.properties.certificateKeyId, `${vaultUrl}/keys/${name}/${c.properties.version}`);
    assert.match(sec.value, /^[A-Za-z0-9+/]+=*$/, "PKCS#12 secret is not standard base64");
    const { keyPem, certPems } = parsePkcs12(Buffer.from(sec.value, "base64"));
    assert.ok(keyPem, "no private key in the PKCS#12");
    assert.ok(certPems.length >= 1, "no certificate in the PKCS#12");
    assert.deepEqual(pemToDer(certPems[0]), Buffer.from(c.cer));
    assertKeyPair(keyPem, new X509Certificate(Buffer.from(c.cer)));
  });
  await check("an EC certificate (P-256) gets an EC managed key", async () => {
    const ecName = `cert-ec-${s}`;
    const policy = { issuerName: "Self", subject: "CN=ec-interop", keyType: "EC", keyCurveName: "P-256" };
    const c = await (await cc.beginCreateCertificate(ecName, policy, POLL)).pollUntilDone();
    const x = assertCertShape(c, { vaultUrl, name: ecName });
    assert.equal(x.publicKey.asymmetricKeyType, "ec");
    const k = await kc.getKey(ecName);
    assert.equal(k.key.crv, "P-256");
    assert.deepEqual(spkiDer(publicKeyFromSdkJwk(k.key)), spkiDer(x.publicKey));
  });

  await check("the certificate-managed key cannot be updated directly (403)", () =>
    expectRestError(() => kc.updateKeyProperties(name, { tags: { not: "allowed" } }), 403));
  await check("getSecret with outContentType=application/x-pem-file converts the PKCS#12 to PEM", async () => {
    const c = need(second, "second");
    const sec = await sc.getSecret(name, { version: c.properties.version, outContentType: "application/x-pem-file" });
    const parts = splitPem(sec.value);
    assert.ok(parts.keyPem, "no private key in the PEM");
    assert.deepEqual(pemToDer(parts.certPems[0]), Buffer.from(c.cer));
    assertKeyPair(parts.keyPem, new X509Certificate(Buffer.from(c.cer)));
  });
  await check("policy with PEM content type, SANs, non-exportable key: secret is PEM without key", async () => {
    const pname = `cert-pem-${s}`;
    const policy = {
      issuerName: "Self", subject: "CN=pem-interop", contentType: "application/x-pem-file", exportable: false,
      subjectAlternativeNames: { dnsNames: ["pem.interop.test"], emails: ["pem@interop.test"] },
    };
    const c = await (await cc.beginCreateCertificate(pname, policy, POLL)).pollUntilDone();
    const x = assertCertShape(c, { vaultUrl, name: pname });
    assert.match(x.subjectAltName || "", /DNS:pem\.interop\.test/);
    assert.match(x.subjectAltName || "", /email:pem@interop\.test/);
    const sec = await sc.getSecret(pname);
    assert.equal(sec.properties.contentType, "application/x-pem-file");
    const parts = splitPem(sec.value);
    assert.equal(parts.keyPem, undefined, "a non-exportable certificate's secret holds the private key");
    assert.deepEqual(pemToDer(parts.certPems[0]), Buffer.from(c.cer));
  });
  await check("reuseKey: a new version keeps the key pair", async () => {
    const rname = `cert-reuse-${s}`;
    const policy = { issuerName: "Self", subject: "CN=reuse-interop", reuseKey: true };
    const c1 = await (await cc.beginCreateCertificate(rname, policy, POLL)).pollUntilDone();
    const c2 = await (await cc.beginCreateCertificate(rname, policy, POLL)).pollUntilDone();
    assert.notEqual(c1.properties.version, c2.properties.version);
    const pub = (c) => spkiDer(new X509Certificate(Buffer.from(c.cer)).publicKey);
    assert.deepEqual(pub(c2), pub(c1));
  });

  // Import.
  await check("importCertificate PEM (key + certificate)", async () => {
    const m = makeSelfSigned("interop-pem");
    const pemName = `import-pem-${s}`;
    const c = await cc.importCertificate(pemName, Buffer.from(m.pem), { policy: { contentType: "application/x-pem-file" } });
    assertCertShape(c, { vaultUrl, name: pemName });
    assert.deepEqual(Buffer.from(c.cer), pemToDer(m.certPem));
    const sec = await sc.getSecret(pemName);
    assert.equal(sec.properties.contentType, "application/x-pem-file");
    const parts = splitPem(sec.value);
    assert.ok(parts.keyPem, "PEM secret has no private key");
    assert.deepEqual(pemToDer(parts.certPems[0]), Buffer.from(c.cer));
    assert.deepEqual(spkiDer(createPublicKey(parts.keyPem)), spkiDer(createPublicKey(m.keyPem)));
    const k = await kc.getKey(pemName);
    assert.deepEqual(spkiDer(publicKeyFromSdkJwk(k.key)), spkiDer(createPublicKey(m.keyPem)));
  });
  await check("importCertificate PKCS#12", async () => {
    const m = makeSelfSigned("interop-pfx", { keySpec: "ec:P-256" });
    const pfxName = `import-pfx-${s}`;
    const c = await cc.importCertificate(pfxName, new Uint8Array(m.pfx));
    assertCertShape(c, { vaultUrl, name: pfxName });
    assert.deepEqual(Buffer.from(c.cer), pemToDer(m.certPem));
    const sec = await sc.getSecret(pfxName);
    assert.equal(sec.properties.contentType, "application/x-pkcs12");
    const { keyPem } = parsePkcs12(Buffer.from(sec.value, "base64"));
    assert.deepEqual(spkiDer(createPublicKey(need(keyPem, "key in PKCS#12"))), spkiDer(createPublicKey(m.keyPem)));
    const k = await kc.getKey(pfxName);
    assert.equal(k.key.crv, "P-256");
  });

  await check("updateCertificateProperties: tags and enabled also reach the managed key and secret", async () => {
    const c = await cc.updateCertificateProperties(name, "", { tags: { team: "interop" } });
    assert.deepEqual(c.properties.tags, { team: "interop" });
    const back = await cc.getCertificate(name);
    assert.deepEqual(back.properties.tags, { team: "interop" });
    assert.equal(back.properties.enabled, true);
    const off = await cc.updateCertificateProperties(name, "", { enabled: false });
    assert.equal(off.properties.enabled, false);
    assert.equal((await kc.getKey(name)).properties.enabled, false, "managed key still enabled");
    await expectRestError(() => sc.getSecret(name), 403, "Forbidden");
    await cc.updateCertificateProperties(name, "", { enabled: true });
    assert.equal((await kc.getKey(name)).properties.enabled, true);
    assert.equal((await sc.getSecret(name)).properties.enabled, true);
  });

  // Issuer "Unknown": the vault keeps the key, hands out a CSR, and takes the signed certificate by merge.
  const mname = `merge-${s}`;
  const csr = await check("beginCreateCertificate with issuer Unknown stays pending with a CSR", async () => {
    const poller = await cc.beginCreateCertificate(mname,
      { issuerName: "Unknown", subject: "CN=merge-interop", keyType: "RSA", keySize: 2048 }, POLL);
    poller.stopPolling();
    const op = (await cc.getCertificateOperation(mname)).getOperationState().certificateOperation;
    assert.equal(op.status, "inProgress");
    const listed = await collect(cc.listPropertiesOfCertificates({ includePending: true }));
    assert.ok(listed.some((i) => i.name === mname), "pending certificate not listed with includePending");
    assert.equal(op.issuerName, "Unknown");
    assert.ok(op.csr && op.csr.length > 100, "no CSR");
    return Buffer.from(op.csr);
  });
  await check("mergeCertificate with the CSR signed by a local CA completes the certificate", async () => {
    const ca = makeSelfSigned("interop-ca");
    const leaf = signCsr(need(csr, "CSR"), ca);
    const c = await cc.mergeCertificate(mname, [new Uint8Array(leaf)]);
    assertCertShape(c, { vaultUrl, name: mname });
    assert.deepEqual(Buffer.from(c.cer), leaf);
    const x = new X509Certificate(leaf);
    assert.ok(x.verify(new X509Certificate(ca.certPem).publicKey), "merged leaf is not the CA-signed one");
    const k = await kc.getKey(mname);
    assert.deepEqual(spkiDer(publicKeyFromSdkJwk(k.key)), spkiDer(x.publicKey), "managed key is not the CSR's key");
    const op = (await cc.getCertificateOperation(mname)).getOperationState().certificateOperation;
    assert.equal(op.status, "completed");
  });
  await check("cancel (poller.cancelOperation) and deleteCertificateOperation on a pending certificate", async () => {
    const pname = `pending-${s}`;
    const poller = await cc.beginCreateCertificate(pname, { issuerName: "Unknown", subject: "CN=pending" }, POLL);
    poller.stopPolling();
    await poller.cancelOperation();
    const op = (await cc.getCertificateOperation(pname)).getOperationState().certificateOperation;
    assert.equal(op.cancellationRequested, true);
    const deleted = await cc.deleteCertificateOperation(pname);
    assert.equal(deleted.name, pname);
    await expectRestError(() => cc.getCertificateOperation(pname), 404);
  });

  await check("backupCertificate / purge / restoreCertificateBackup brings back certificate, key and secret", async () => {
    const bname = `cert-backup-${s}`;
    const c = await (await cc.beginCreateCertificate(bname, DefaultCertificatePolicy, POLL)).pollUntilDone();
    const blob = await cc.backupCertificate(bname);
    assert.ok(blob && blob.length > 100, "empty backup blob");
    await (await cc.beginDeleteCertificate(bname, POLL)).pollUntilDone();
    await cc.purgeDeletedCertificate(bname);
    await expectRestError(() => cc.getCertificate(bname), 404, "CertificateNotFound");
    const r = await cc.restoreCertificateBackup(blob);
    assert.equal(r.name, bname);
    assert.equal(r.properties.version, c.properties.version);
    assert.deepEqual(Buffer.from(r.cer), Buffer.from(c.cer));
    const k = await kc.getKey(bname);
    assert.equal(k.properties.version, c.properties.version);
    const { keyPem } = parsePkcs12(Buffer.from((await sc.getSecret(bname)).value, "base64"));
    assertKeyPair(need(keyPem, "key in the restored PKCS#12"), new X509Certificate(Buffer.from(c.cer)));
  });

  // Delete, recover, purge.
  await check("beginDeleteCertificate poller completes with a DeletedCertificate", async () => {
    const del = await (await cc.beginDeleteCertificate(name, POLL)).pollUntilDone();
    assert.equal(del.name, name);
    assert.equal(del.recoveryId, `${vaultUrl}/deletedcertificates/${name}`);
    assert.ok(del.deletedOn instanceof Date);
    assert.ok(del.scheduledPurgeDate > del.deletedOn);
  });
  await check("the deleted certificate, its key and secret are gone (404)", async () => {
    await expectRestError(() => cc.getCertificate(name), 404, "CertificateNotFound");
    await expectRestError(() => kc.getKey(name), 404, "KeyNotFound");
    await expectRestError(() => sc.getSecret(name), 404, "SecretNotFound");
  });
  await check("getDeletedCertificate and listDeletedCertificates", async () => {
    const d = await cc.getDeletedCertificate(name);
    assert.equal(d.name, name);
    const items = await collect(cc.listDeletedCertificates());
    assert.ok(items.some((i) => i.name === name), `${name} not listed`);
  });
  await check("beginRecoverDeletedCertificate brings back certificate, key and secret", async () => {
    await (await cc.beginRecoverDeletedCertificate(name, POLL)).pollUntilDone();
    const c = await cc.getCertificate(name);
    assert.equal(c.properties.version, need(second, "second").properties.version);
    assert.equal((await kc.getKey(name)).properties.version, c.properties.version);
    assert.equal((await sc.getSecret(name)).properties.version, c.properties.version);
  });
  await check("delete again and purgeDeletedCertificate", async () => {
    await (await cc.beginDeleteCertificate(name, POLL)).pollUntilDone();
    await cc.purgeDeletedCertificate(name);
    await expectRestError(() => cc.getDeletedCertificate(name), 404, "CertificateNotFound");
  });
}
