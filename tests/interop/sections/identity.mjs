// SPDX-License-Identifier: Apache-2.0
// Credentials of @azure/identity against the emulator's Entra ID and managed identity endpoints,
// plus the raw protocol facts the SDK relies on.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { generateKeyPairSync } from "node:crypto";
import {
  ClientAssertionCredential,
  ClientCertificateCredential,
  ClientSecretCredential,
  WorkloadIdentityCredential,
} from "@azure/identity";
import { SecretClient } from "@azure/keyvault-secrets";
import { assert, check, need } from "../lib/harness.mjs";
import { makeSelfSigned } from "../lib/util.mjs";

const VAULT_SCOPE = "https://vault.azure.net/.default";
const HSM_SCOPE = "https://managedhsm.azure.net/.default";
const here = dirname(fileURLToPath(import.meta.url));

function assertToken(token) {
  assert.ok(token && typeof token.token === "string" && token.token.length > 20, "no access token returned");
  // A JWT (header.payload.signature); its content is the emulator's business, only the shape is checked.
  assert.equal(token.token.split(".").length, 3, "access token is not a JWT");
  assert.ok(token.expiresOnTimestamp > Date.now() + 60_000, "token expires within a minute");
}

// A credential proves itself by a token and by a real data-plane call (set + get secret).
async function useOnVault(ctx, cred, label) {
  const client = new SecretClient(ctx.vaultUrl, cred, ctx.clientOpts);
  const name = `cred-${label}-${ctx.suffix}`;
  await client.setSecret(name, `v-${label}`);
  const back = await client.getSecret(name);
  assert.equal(back.value, `v-${label}`);
}

function runChild(mode, vaultUrl, secretName, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(here, "..", "lib", "credential-child.mjs"), mode, vaultUrl, secretName],
      { env, timeout: 90_000, cwd: join(here, "..") }, (err, stdout, stderr) => {
        const line = stdout.trim().split("\n").filter(Boolean).pop() || "";
        let parsed;
        try {
          parsed = JSON.parse(line);
        } catch {
          parsed = { ok: false, error: `child printed no result (${err ? err.message : "?"}): ${stderr.slice(0, 400)}` };
        }
        resolve(parsed);
      });
  });
}

// Environment for a child: only what Node needs plus the variables under test, so no other credential
// source (e.g. AZURE_FEDERATED_TOKEN_FILE) can be picked up by accident.
function baseEnv() {
  const env = {};
  for (const k of ["PATH", "HOME", "NODE_EXTRA_CA_CERTS", "TMPDIR", "LANG"]) if (process.env[k]) env[k] = process.env[k];
  return env;
}

function imdsHost(endpoint) {
  // msal-node appends /metadata/identity/oauth2/token to AZURE_POD_IDENTITY_AUTHORITY_HOST.
  const u = new URL(endpoint);
  return `${u.protocol}//${u.host}`;
}

export async function runIdentity(ctx) {
  const { ready, authOpts } = ctx;
  const tokenUrl = `${ready.authority_host.replace(/\/+$/, "")}/${ready.tenant_id}/oauth2/v2.0/token`;

  await check("OpenID configuration document has the members MSAL requires", async () => {
    const res = await fetch(`${ready.authority_host.replace(/\/+$/, "")}/${ready.tenant_id}/v2.0/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
    const doc = await res.json();
    for (const k of ["authorization_endpoint", "token_endpoint", "issuer", "jwks_uri"]) {
      assert.equal(typeof doc[k], "string", `openid-configuration lacks ${k}`);
    }
    assert.ok(doc.token_endpoint.startsWith("https://"), "token_endpoint is not https");
  });

  await check("unauthenticated vault request gets the 401 Bearer challenge", async () => {
    const res = await fetch(`${ctx.vaultUrl}/secrets?api-version=7.6`);
    assert.equal(res.status, 401);
    const www = res.headers.get("www-authenticate") || "";
    assert.match(www, /^Bearer /, `WWW-Authenticate: ${www}`);
    assert.match(www, /authorization(_uri)?="https:\/\/[^"]+\/[^"/]+"/, `no authorization= in ${www}`);
    assert.match(www, /resource="https:\/\/vault\.azure\.net"/, `no vault resource in ${www}`);
  });

  await check("unauthenticated Managed HSM request gets the managedhsm challenge", async () => {
    const res = await fetch(`${ctx.hsmUrl}/keys?api-version=7.6`);
    assert.equal(res.status, 401);
    const www = res.headers.get("www-authenticate") || "";
    assert.match(www, /resource="https:\/\/managedhsm\.azure\.net"/, `no managedhsm resource in ${www}`);
  });

  await check("ClientSecretCredential token for the vault scope", async () => {
    assertToken(await ctx.credential.getToken(VAULT_SCOPE));
  });
  await check("ClientSecretCredential token for the Managed HSM scope", async () => {
    assertToken(await ctx.credential.getToken(HSM_SCOPE));
  });
  await check("ClientSecretCredential used by SecretClient", () => useOnVault(ctx, ctx.credential, "secret"));

  await check("ClientCertificateCredential (PEM file) token and vault call", async () => {
    const file = need(ready.client_certificate_file, "ready file client_certificate_file");
    const cred = new ClientCertificateCredential(ready.tenant_id, ready.client_id, { certificatePath: file }, authOpts);
    assertToken(await cred.getToken(VAULT_SCOPE));
    await useOnVault(ctx, cred, "cert");
  });

  await check("ClientCertificateCredential with sendCertificateChain (x5c header)", async () => {
    const file = need(ready.client_certificate_file, "ready file client_certificate_file");
    const cred = new ClientCertificateCredential(ready.tenant_id, ready.client_id,
      { certificate: readFileSync(file, "utf8") }, { ...authOpts, sendCertificateChain: true });
    assertToken(await cred.getToken(VAULT_SCOPE));
  });

  await check("ClientAssertionCredential with the federated token", async () => {
    const file = need(ready.federated_token_file, "ready file federated_token_file");
    const cred = new ClientAssertionCredential(ready.tenant_id, ready.client_id,
      async () => readFileSync(file, "utf8").trim(), authOpts);
    assertToken(await cred.getToken(VAULT_SCOPE));
    await useOnVault(ctx, cred, "assertion");
  });

  await check("WorkloadIdentityCredential with the federated token file", async () => {
    const file = need(ready.federated_token_file, "ready file federated_token_file");
    const cred = new WorkloadIdentityCredential({
      tenantId: ready.tenant_id, clientId: ready.client_id, tokenFilePath: file, ...authOpts });
    assertToken(await cred.getToken(VAULT_SCOPE));
    await useOnVault(ctx, cred, "workload");
  });

  // Environment-driven credentials run in child processes (see lib/credential-child.mjs).
  let childNo = 0;
  const childCheck = (title, mode, env, expectLifetime) => check(title, async () => {
    const r = await runChild(mode, ctx.vaultUrl, `cred-${mode}-${++childNo}-${ctx.suffix}`, { ...baseEnv(), ...env() });
    assert.ok(r.ok, r.error);
    assert.ok(r.roundTrip, "secret round trip with the credential's token failed");
    if (expectLifetime) assert.ok(r.expiresInS > 60, `token lifetime ${r.expiresInS}s`);
  });
  await childCheck("ManagedIdentityCredential via IMDS (AZURE_POD_IDENTITY_AUTHORITY_HOST)", "mi-imds", () => ({
    AZURE_POD_IDENTITY_AUTHORITY_HOST: imdsHost(need(ready.imds_endpoint, "ready file imds_endpoint")),
  }), true);
  await childCheck("ManagedIdentityCredential via App Service (IDENTITY_ENDPOINT/IDENTITY_HEADER)", "mi-appservice", () => ({
    IDENTITY_ENDPOINT: need(ready.identity_endpoint, "ready file identity_endpoint"),
    IDENTITY_HEADER: need(ready.identity_header, "ready file identity_header"),
  }), true);
  const appEnv = { AZURE_TENANT_ID: ready.tenant_id, AZURE_CLIENT_ID: ready.client_id, AZURE_AUTHORITY_HOST: ready.authority_host };
  await childCheck("EnvironmentCredential (AZURE_CLIENT_SECRET + AZURE_AUTHORITY_HOST)", "env-secret", () => ({
    ...appEnv, AZURE_CLIENT_SECRET: ready.client_secret,
  }), false);
  await childCheck("EnvironmentCredential (AZURE_CLIENT_CERTIFICATE_PATH)", "env-certificate", () => ({
    ...appEnv, AZURE_CLIENT_CERTIFICATE_PATH: need(ready.client_certificate_file, "ready file client_certificate_file"),
  }), false);

  // Bearer validation on the data plane: the audience must match the service (vault vs Managed HSM).
  const bearerStatus = async (url, token) => (await fetch(`${url}/keys?api-version=7.6`, {
    headers: { authorization: `Bearer ${token}` } })).status;
  await check("vault token accepted by the vault, refused by the Managed HSM (audience)", async () => {
    const t = (await ctx.credential.getToken(VAULT_SCOPE)).token;
    assert.equal(await bearerStatus(ctx.vaultUrl, t), 200);
    assert.equal(await bearerStatus(ctx.hsmUrl, t), 401);
  });
  await check("Managed HSM token accepted by the Managed HSM, refused by the vault (audience)", async () => {
    const t = (await ctx.credential.getToken(HSM_SCOPE)).token;
    assert.equal(await bearerStatus(ctx.hsmUrl, t), 200);
    assert.equal(await bearerStatus(ctx.vaultUrl, t), 401);
  });
  await check("a bearer token with a forged signature is refused (401)", async () => {
    const t = (await ctx.credential.getToken(VAULT_SCOPE)).token.split(".");
    const sig = Buffer.from(t[2], "base64url");
    sig[0] ^= 1;
    assert.equal(await bearerStatus(ctx.vaultUrl, `${t[0]}.${t[1]}.${sig.toString("base64url")}`), 401);
  });

  await childCheck("DefaultAzureCredential picks WorkloadIdentityCredential from AZURE_FEDERATED_TOKEN_FILE", "default", () => ({
    ...appEnv, AZURE_FEDERATED_TOKEN_FILE: need(ready.federated_token_file, "ready file federated_token_file"),
  }), true);
  await childCheck("DefaultAzureCredential picks the IMDS managed identity", "default", () => ({
    AZURE_POD_IDENTITY_AUTHORITY_HOST: imdsHost(need(ready.imds_endpoint, "ready file imds_endpoint")),
  }), true);
  await childCheck("DefaultAzureCredential with AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential (App Service)", "default", () => ({
    AZURE_TOKEN_CREDENTIALS: "ManagedIdentityCredential",
    IDENTITY_ENDPOINT: need(ready.identity_endpoint, "ready file identity_endpoint"),
    IDENTITY_HEADER: need(ready.identity_header, "ready file identity_header"),
  }), true);

  // Negative paths: the emulator must reject bad credentials the way Entra does (HTTP 401 invalid_client
  // for a wrong secret) and the SDK must surface that as a credential error, not as a vault RestError.
  await check("token endpoint answers 401 invalid_client to a wrong client secret", async () => {
    const body = new URLSearchParams({
      grant_type: "client_credentials", client_id: ready.client_id,
      client_secret: "definitely-not-the-secret", scope: VAULT_SCOPE,
    });
    const res = await fetch(tokenUrl, { method: "POST", body,
      headers: { "content-type": "application/x-www-form-urlencoded" } });
    assert.equal(res.status, 401);
    const doc = await res.json();
    assert.equal(doc.error, "invalid_client");
    assert.equal(typeof doc.error_description, "string");
  });

  await check("wrong client secret surfaces as a credential error from getToken", async () => {
    const bad = new ClientSecretCredential(ready.tenant_id, ready.client_id, "definitely-not-the-secret", authOpts);
    await assert.rejects(bad.getToken(VAULT_SCOPE), (err) => {
      assert.match(err.name, /^(AuthenticationError|AuthenticationRequiredError|CredentialUnavailableError)$/,
        `unexpected error type ${err.name}: ${err.message}`);
      assert.match(err.message, /invalid_client|AADSTS7000215|401/, err.message);
      return true;
    });
  });

  await check("wrong client secret surfaces as a credential error from SecretClient, not a RestError", async () => {
    const bad = new ClientSecretCredential(ready.tenant_id, ready.client_id, "definitely-not-the-secret", authOpts);
    const client = new SecretClient(ctx.vaultUrl, bad, ctx.clientOpts);
    await assert.rejects(client.getSecret(`cred-secret-${ctx.suffix}`), (err) => {
      assert.notEqual(err.name, "RestError", `got a RestError ${err.statusCode}: ${err.message}`);
      assert.match(err.message, /invalid_client|AADSTS7000215|401/, err.message);
      return true;
    });
  });

  await check("unregistered client certificate is rejected", async () => {
    const other = makeSelfSigned("not-registered");
    const cred = new ClientCertificateCredential(ready.tenant_id, ready.client_id,
      { certificate: other.keyPem + other.certPem }, authOpts);
    await assert.rejects(cred.getToken(VAULT_SCOPE), (err) => err.name !== "RestError");
  });

  await check("forged client assertion is rejected", async () => {
    // A well-formed RS256 JWT signed by a key the emulator has never seen.
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const now = Math.floor(Date.now() / 1000);
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const head = enc({ alg: "RS256", typ: "JWT" });
    const body = enc({ aud: tokenUrl, iss: ready.client_id, sub: ready.client_id, jti: `${now}`, nbf: now, exp: now + 600 });
    const { sign } = await import("node:crypto");
    const sig = sign("sha256", Buffer.from(`${head}.${body}`), privateKey).toString("base64url");
    const cred = new ClientAssertionCredential(ready.tenant_id, ready.client_id, async () => `${head}.${body}.${sig}`, authOpts);
    await assert.rejects(cred.getToken(VAULT_SCOPE), (err) => err.name !== "RestError");
  });
}
