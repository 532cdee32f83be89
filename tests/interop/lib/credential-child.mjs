// SPDX-License-Identifier: Apache-2.0
// Runs one credential in a fresh process, because the environment-driven credentials (managed identity,
// EnvironmentCredential) read process.env and msal-node caches the managed identity source per process.
// Usage: node credential-child.mjs MODE VAULT_URL SECRET_NAME
//   MODE: mi-imds | mi-appservice | env-secret | env-certificate | default (DefaultAzureCredential, no options)
// Gets a token for the vault scope, then writes and reads back a secret with it. Prints one JSON line
// {"ok":true,...} or {"ok":false,"error":...}; never prints the token.
import { DefaultAzureCredential, EnvironmentCredential, ManagedIdentityCredential } from "@azure/identity";
import { SecretClient } from "@azure/keyvault-secrets";

const [mode, vaultUrl, secretName] = process.argv.slice(2);

function credentialFor(m) {
  switch (m) {
    case "mi-imds":
    case "mi-appservice":
      return new ManagedIdentityCredential();
    case "env-secret":
    case "env-certificate":
      return new EnvironmentCredential({ disableInstanceDiscovery: true });
    case "default":
      // No options at all, as applications use it: the chain picks its source from the environment (without
      // disableInstanceDiscovery, which the emulator's discovery endpoint makes unnecessary).
      return new DefaultAzureCredential();
    default:
      throw new Error(`unknown mode ${m}`);
  }
}

try {
  const cred = credentialFor(mode);
  const token = await cred.getToken("https://vault.azure.net/.default");
  if (!token || typeof token.token !== "string" || token.token.length < 10) throw new Error("empty access token");
  const client = new SecretClient(vaultUrl, cred, { disableChallengeResourceVerification: true });
  const value = `written-by-${mode}`;
  await client.setSecret(secretName, value);
  const back = await client.getSecret(secretName);
  console.log(JSON.stringify({ ok: true, expiresInS: Math.round((token.expiresOnTimestamp - Date.now()) / 1000),
    roundTrip: back.value === value }));
  process.exit(0);
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: `${err.name}: ${err.message}`.slice(0, 800) }));
  process.exit(1);
}
