/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jwt.c - compact JWS (RS256/PS256) signing and verification with OpenSSL EVP,
 * for access tokens, the federated token and client assertions.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rsa.h>

static char *b64url_json_new(const cJSON *j)
{
  char *text = cJSON_PrintUnformatted(j);
  char *out = NULL;
  if (!text)
    return NULL;
  out = emu_b64url_encode((const unsigned char *)text, strlen(text));
  free(text);
  return out;
}

char *jwt_sign_new(EVP_PKEY *key, const cJSON *claims, const char *kid)
{
  cJSON *hdr = cJSON_CreateObject();
  char *h = NULL, *p = NULL, *input = NULL, *sig64 = NULL, *out = NULL;
  unsigned char *sig = NULL;
  size_t siglen = 0;
  EVP_MD_CTX *md = NULL;

  if (!hdr || !cJSON_AddStringToObject(hdr, "typ", "JWT") ||
      !cJSON_AddStringToObject(hdr, "alg", "RS256") ||
      (kid && !cJSON_AddStringToObject(hdr, "kid", kid)))
    goto out;
  h = b64url_json_new(hdr);
  p = b64url_json_new(claims);
  if (!h || !p)
    goto out;
  input = emu_strdup_printf("%s.%s", h, p);
  md = EVP_MD_CTX_new();
  if (!input || !md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
      EVP_DigestSign(md, NULL, &siglen, (unsigned char *)input, strlen(input)) != 1)
    goto out;
  sig = malloc(siglen);
  if (!sig || EVP_DigestSign(md, sig, &siglen, (unsigned char *)input, strlen(input)) != 1)
    goto out;
  sig64 = emu_b64url_encode(sig, siglen);
  if (sig64)
    out = emu_strdup_printf("%s.%s", input, sig64);
out:
  cJSON_Delete(hdr);
  free(h);
  free(p);
  free(input);
  free(sig);
  free(sig64);
  EVP_MD_CTX_free(md);
  return out;
}

static cJSON *decode_part(const char *start, size_t len)
{
  char *tmp = strndup(start, len);
  unsigned char *raw = NULL;
  size_t rawlen = 0;
  cJSON *j = NULL;
  if (tmp && emu_b64url_decode(tmp, &raw, &rawlen) == 0)
    j = emu_json_parse((const char *)raw, rawlen);
  free(tmp);
  free(raw);
  if (j && !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    j = NULL;
  }
  return j;
}

cJSON *jwt_header_new(const char *token)
{
  const char *dot = token ? strchr(token, '.') : NULL;
  if (!dot || strlen(token) > EMU_TOKEN_MAX)
    return NULL;
  return decode_part(token, (size_t)(dot - token));
}

cJSON *jwt_verify_new(const char *token, EVP_PKEY *key, bool allow_pss, cJSON **header_out,
                      const char **err)
{
  const char *d1, *d2;
  cJSON *hdr = NULL, *claims = NULL;
  unsigned char *sig = NULL;
  size_t siglen = 0;
  EVP_MD_CTX *md = NULL;
  EVP_PKEY_CTX *pctx = NULL;
  char *sigtext = NULL;
  bool pss = false;

  *err = "malformed token";
  if (!token || strlen(token) > EMU_TOKEN_MAX)
    goto fail;
  d1 = strchr(token, '.');
  d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  if (!d1 || !d2 || strchr(d2 + 1, '.'))
    goto fail;
  hdr = decode_part(token, (size_t)(d1 - token));
  claims = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
  if (!hdr || !claims)
    goto fail;
  const cJSON *alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
  if (!cJSON_IsString(alg)) {
    *err = "token header has no alg";
    goto fail;
  }
  if (strcmp(alg->valuestring, "PS256") == 0 && allow_pss) {
    pss = true;
  } else if (strcmp(alg->valuestring, "RS256") != 0) {
    *err = "unsupported token algorithm";
    goto fail;
  }
  sigtext = strdup(d2 + 1);
  if (!sigtext || emu_b64url_decode(sigtext, &sig, &siglen) != 0)
    goto fail;
  md = EVP_MD_CTX_new();
  if (!md || EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key) != 1) {
    *err = "internal error";
    goto fail;
  }
  if (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1)) {
    *err = "internal error";
    goto fail;
  }
  if (EVP_DigestVerify(md, sig, siglen, (const unsigned char *)token, (size_t)(d2 - token)) != 1) {
    *err = "signature verification failed";
    goto fail;
  }
  *err = NULL;
  if (header_out)
    *header_out = hdr;
  else
    cJSON_Delete(hdr);
  hdr = NULL;
  goto out;
fail:
  cJSON_Delete(claims);
  claims = NULL;
out:
  cJSON_Delete(hdr);
  free(sig);
  free(sigtext);
  EVP_MD_CTX_free(md);
  return claims;
}
