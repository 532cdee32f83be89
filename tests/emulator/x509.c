/* SPDX-License-Identifier: Apache-2.0 */
/* X.509, CSR and PKCS#12/PEM helpers for the emulator's certificates.
 * Everything here is built with OpenSSL objects, never by string surgery on ASN.1; request
 * members are validated before they reach OpenSSL so that no config-string parsing happens. */
#include "x509.h"

#include "emu.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define X509_MAX_SUBJECT 1024
#define X509_MAX_SANS 100
#define X509_MAX_IMPORT (256 * 1024)

/* Names accepted in subject strings that OpenSSL does not know under that spelling. */
static const struct {
  const char *alias;
  int nid;
} subject_aliases[] = {
    {"CN", NID_commonName},
    {"O", NID_organizationName},
    {"OU", NID_organizationalUnitName},
    {"C", NID_countryName},
    {"L", NID_localityName},
    {"ST", NID_stateOrProvinceName},
    {"S", NID_stateOrProvinceName},
    {"E", NID_pkcs9_emailAddress},
    {"EMAIL", NID_pkcs9_emailAddress},
    {"DC", NID_domainComponent},
    {"STREET", NID_streetAddress},
    {"SERIALNUMBER", NID_serialNumber},
    {"T", NID_title},
    {"G", NID_givenName},
    {"SN", NID_surname},
    {"UID", NID_userId},
};

/* KeyUsageType names of the service and their X.509 bits. */
static const struct {
  const char *name;
  int bit;
} key_usages[] = {
    {"digitalSignature", 0}, {"nonRepudiation", 1}, {"keyEncipherment", 2},
    {"dataEncipherment", 3}, {"keyAgreement", 4},   {"keyCertSign", 5},
    {"cRLSign", 6},          {"encipherOnly", 7},   {"decipherOnly", 8},
};

static const struct {
  const char *crv;
  const char *group;
} curves[] = {
    {"P-256", "prime256v1"},
    {"P-384", "secp384r1"},
    {"P-521", "secp521r1"},
    {"P-256K", "secp256k1"},
};

EVP_PKEY *x509_keygen_new(const char *kty, int key_size, const char *crv, const char **err)
{
  EVP_PKEY *pkey = NULL;
  size_t i;

  if (!strcmp(kty, "RSA") || !strcmp(kty, "RSA-HSM")) {
    if (key_size != 2048 && key_size != 3072 && key_size != 4096) {
      *err = "key_props.key_size must be 2048, 3072 or 4096 for RSA.";
      goto out;
    }
    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)key_size);
  } else if (!strcmp(kty, "EC") || !strcmp(kty, "EC-HSM")) {
    for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
      if (!strcmp(crv, curves[i].crv))
        break;
    }
    if (i == sizeof(curves) / sizeof(curves[0])) {
      *err = "key_props.crv must be one of P-256, P-384, P-521, P-256K.";
      goto out;
    }
    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curves[i].group);
  } else {
    *err = "key_props.kty must be RSA, RSA-HSM, EC or EC-HSM.";
    goto out;
  }
  if (!pkey)
    *err = "Key generation failed.";
out:
  return pkey;
}

static int subject_nid(const char *key)
{
  size_t i;
  int nid = OBJ_txt2nid(key);

  if (nid != NID_undef)
    return nid;
  for (i = 0; i < sizeof(subject_aliases) / sizeof(subject_aliases[0]); i++) {
    if (!strcasecmp(key, subject_aliases[i].alias))
      return subject_aliases[i].nid;
  }
  return NID_undef;
}

/* Parse "CN=a, O=b" (',' or ';' separated, '\' escapes) into an X509_NAME, RDNs in string
 * order. Returns NULL with *err set when the text is not a distinguished name. */
static X509_NAME *subject_parse(const char *text, const char **err)
{
  X509_NAME *name = NULL, *ret = NULL;
  char key[64], val[X509_MAX_SUBJECT];
  size_t klen, vlen;
  const char *p = text;
  int nid;

  if (!text || !*text || strlen(text) >= X509_MAX_SUBJECT) {
    *err = "x509_props.subject must be a distinguished name such as \"CN=example\".";
    goto out;
  }
  name = X509_NAME_new();
  if (!name) {
    *err = "Out of memory.";
    goto out;
  }
  while (*p) {
    while (*p == ' ')
      p++;
    klen = 0;
    while (*p && *p != '=' && klen < sizeof(key) - 1)
      key[klen++] = *p++;
    while (klen && key[klen - 1] == ' ')
      klen--;
    key[klen] = '\0';
    if (*p != '=' || !klen) {
      *err = "x509_props.subject is not a valid distinguished name (expected NAME=value).";
      goto out;
    }
    p++;
    while (*p == ' ')
      p++;
    vlen = 0;
    while (*p && *p != ',' && *p != ';') {
      if (*p == '\\' && p[1])
        p++;
      val[vlen++] = *p++;
    }
    while (vlen && val[vlen - 1] == ' ')
      vlen--;
    val[vlen] = '\0';
    if (*p)
      p++;
    nid = subject_nid(key);
    if (nid == NID_undef || !vlen) {
      *err = "x509_props.subject has an unknown attribute name or an empty value.";
      goto out;
    }
    if (!X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8, (const unsigned char *)val, (int)vlen,
                                    -1, 0)) {
      *err = "x509_props.subject has a value that does not fit its attribute.";
      goto out;
    }
  }
  if (X509_NAME_entry_count(name) == 0) {
    *err = "x509_props.subject is empty.";
    goto out;
  }
  ret = name;
  name = NULL;
out:
  X509_NAME_free(name);
  return ret;
}

static int is_string_array(const cJSON *a, int max)
{
  const cJSON *e;

  if (!a)
    return 1;
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > max)
    return 0;
  cJSON_ArrayForEach(e, a)
  {
    if (!cJSON_IsString(e) || !e->valuestring[0] || strlen(e->valuestring) > 255)
      return 0;
  }
  return 1;
}

static int is_oid(const char *s)
{
  ASN1_OBJECT *o;
  const char *p;
  int ok;

  for (p = s; *p; p++) {
    if (!isdigit((unsigned char)*p) && *p != '.')
      return 0;
  }
  o = OBJ_txt2obj(s, 1);
  ok = o != NULL;
  ASN1_OBJECT_free(o);
  return ok;
}

static int key_usage_bit(const char *name)
{
  size_t i;

  for (i = 0; i < sizeof(key_usages) / sizeof(key_usages[0]); i++) {
    if (!strcmp(name, key_usages[i].name))
      return key_usages[i].bit;
  }
  return -1;
}

int x509_props_check(const cJSON *props, const char **err)
{
  const cJSON *sans, *e, *vm, *subject;
  X509_NAME *name = NULL;
  int rc = -1;

  if (!cJSON_IsObject(props)) {
    *err = "policy.x509_props must be an object.";
    goto out;
  }
  subject = cJSON_GetObjectItemCaseSensitive(props, "subject");
  if (!cJSON_IsString(subject)) {
    *err = "policy.x509_props.subject is required and must be a string.";
    goto out;
  }
  name = subject_parse(subject->valuestring, err);
  if (!name)
    goto out;
  sans = cJSON_GetObjectItemCaseSensitive(props, "sans");
  if (sans && !cJSON_IsNull(sans)) {
    if (!cJSON_IsObject(sans) ||
        !is_string_array(cJSON_GetObjectItemCaseSensitive(sans, "dns_names"), X509_MAX_SANS) ||
        !is_string_array(cJSON_GetObjectItemCaseSensitive(sans, "emails"), X509_MAX_SANS) ||
        !is_string_array(cJSON_GetObjectItemCaseSensitive(sans, "upns"), X509_MAX_SANS)) {
      *err = "policy.x509_props.sans must hold arrays of non-empty strings (dns_names, emails, "
             "upns).";
      goto out;
    }
  }
  e = cJSON_GetObjectItemCaseSensitive(props, "ekus");
  if (e && !cJSON_IsNull(e)) {
    const cJSON *oid;

    if (!is_string_array(e, 32)) {
      *err = "policy.x509_props.ekus must be an array of OID strings.";
      goto out;
    }
    cJSON_ArrayForEach(oid, e)
    {
      if (!is_oid(oid->valuestring)) {
        *err = "policy.x509_props.ekus holds a value that is not a dotted OID.";
        goto out;
      }
    }
  }
  e = cJSON_GetObjectItemCaseSensitive(props, "key_usage");
  if (e && !cJSON_IsNull(e)) {
    const cJSON *ku;

    if (!is_string_array(e, 9)) {
      *err = "policy.x509_props.key_usage must be an array of KeyUsageType names.";
      goto out;
    }
    cJSON_ArrayForEach(ku, e)
    {
      if (key_usage_bit(ku->valuestring) < 0) {
        *err = "policy.x509_props.key_usage holds an unknown KeyUsageType.";
        goto out;
      }
    }
  }
  vm = cJSON_GetObjectItemCaseSensitive(props, "validity_months");
  if (vm && !cJSON_IsNull(vm) &&
      (!cJSON_IsNumber(vm) || vm->valuedouble < 1 || vm->valuedouble > 1200 ||
       vm->valuedouble != (double)(int)vm->valuedouble)) {
    *err = "policy.x509_props.validity_months must be an integer between 1 and 1200.";
    goto out;
  }
  rc = 0;
out:
  X509_NAME_free(name);
  return rc;
}

/* otherName UPN (1.3.6.1.4.1.311.20.2.3, UTF8String) as Windows issues it. */
static GENERAL_NAME *upn_name_new(const char *upn)
{
  GENERAL_NAME *gn = NULL, *ret = NULL;
  ASN1_TYPE *val = NULL;
  ASN1_UTF8STRING *s = NULL;
  ASN1_OBJECT *oid = NULL;

  gn = GENERAL_NAME_new();
  val = ASN1_TYPE_new();
  s = ASN1_UTF8STRING_new();
  oid = OBJ_txt2obj("1.3.6.1.4.1.311.20.2.3", 1);
  if (!gn || !val || !s || !oid || !ASN1_STRING_set(s, upn, (int)strlen(upn)))
    goto out;
  ASN1_TYPE_set(val, V_ASN1_UTF8STRING, s);
  s = NULL;
  if (!GENERAL_NAME_set0_othername(gn, oid, val))
    goto out;
  oid = NULL;
  val = NULL;
  ret = gn;
  gn = NULL;
out:
  GENERAL_NAME_free(gn);
  ASN1_TYPE_free(val);
  ASN1_UTF8STRING_free(s);
  ASN1_OBJECT_free(oid);
  return ret;
}

static int sans_add(GENERAL_NAMES *names, const cJSON *arr, int type)
{
  const cJSON *e;
  GENERAL_NAME *gn;
  ASN1_IA5STRING *s;

  cJSON_ArrayForEach(e, arr)
  {
    if (type == GEN_OTHERNAME) {
      gn = upn_name_new(e->valuestring);
    } else {
      gn = GENERAL_NAME_new();
      s = ASN1_IA5STRING_new();
      if (!gn || !s || !ASN1_STRING_set(s, e->valuestring, (int)strlen(e->valuestring))) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return -1;
      }
      GENERAL_NAME_set0_value(gn, type, s);
    }
    if (!gn || !sk_GENERAL_NAME_push(names, gn)) {
      GENERAL_NAME_free(gn);
      return -1;
    }
  }
  return 0;
}

/* The extensions of the requested certificate: keyUsage (critical), basicConstraints CA:FALSE,
 * extendedKeyUsage and subjectAltName, as the service puts them into its CSR and certificate. */
static STACK_OF(X509_EXTENSION) * policy_exts_new(const cJSON *props, EVP_PKEY *pkey)
{
  STACK_OF(X509_EXTENSION) *exts = NULL, *ret = NULL;
  ASN1_BIT_STRING *ku = NULL;
  EXTENDED_KEY_USAGE *eku = NULL;
  BASIC_CONSTRAINTS *bc = NULL;
  GENERAL_NAMES *names = NULL;
  const cJSON *arr, *e, *sans;
  ASN1_OBJECT *o;
  int is_rsa = EVP_PKEY_is_a(pkey, "RSA");

  exts = sk_X509_EXTENSION_new_null();
  ku = ASN1_BIT_STRING_new();
  eku = sk_ASN1_OBJECT_new_null();
  bc = BASIC_CONSTRAINTS_new();
  names = GENERAL_NAMES_new();
  if (!exts || !ku || !eku || !bc || !names)
    goto out;

  arr = cJSON_GetObjectItemCaseSensitive(props, "key_usage");
  if (cJSON_IsArray(arr) && cJSON_GetArraySize(arr) > 0) {
    cJSON_ArrayForEach(e, arr)
    {
      if (!ASN1_BIT_STRING_set_bit(ku, key_usage_bit(e->valuestring), 1))
        goto out;
    }
  } else {
    if (!ASN1_BIT_STRING_set_bit(ku, 0, 1) || (is_rsa && !ASN1_BIT_STRING_set_bit(ku, 2, 1)))
      goto out;
  }
  if (!X509V3_add1_i2d(&exts, NID_key_usage, ku, 1, X509V3_ADD_APPEND))
    goto out;

  bc->ca = 0;
  if (!X509V3_add1_i2d(&exts, NID_basic_constraints, bc, 0, X509V3_ADD_APPEND))
    goto out;

  arr = cJSON_GetObjectItemCaseSensitive(props, "ekus");
  if (cJSON_IsArray(arr)) {
    cJSON_ArrayForEach(e, arr)
    {
      o = OBJ_txt2obj(e->valuestring, 1);
      if (!o || !sk_ASN1_OBJECT_push(eku, o)) {
        ASN1_OBJECT_free(o);
        goto out;
      }
    }
  } else {
    if (!sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) ||
        !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)))
      goto out;
  }
  if (sk_ASN1_OBJECT_num(eku) > 0 &&
      !X509V3_add1_i2d(&exts, NID_ext_key_usage, eku, 0, X509V3_ADD_APPEND))
    goto out;

  sans = cJSON_GetObjectItemCaseSensitive(props, "sans");
  if (cJSON_IsObject(sans)) {
    if (sans_add(names, cJSON_GetObjectItemCaseSensitive(sans, "dns_names"), GEN_DNS) ||
        sans_add(names, cJSON_GetObjectItemCaseSensitive(sans, "emails"), GEN_EMAIL) ||
        sans_add(names, cJSON_GetObjectItemCaseSensitive(sans, "upns"), GEN_OTHERNAME))
      goto out;
  }
  if (sk_GENERAL_NAME_num(names) > 0 &&
      !X509V3_add1_i2d(&exts, NID_subject_alt_name, names, 0, X509V3_ADD_APPEND))
    goto out;
  ret = exts;
  exts = NULL;
out:
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  ASN1_BIT_STRING_free(ku);
  sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
  BASIC_CONSTRAINTS_free(bc);
  GENERAL_NAMES_free(names);
  return ret;
}

/* Digest that fits the key: SHA-256 for RSA and P-256(K), SHA-384/512 for the larger curves. */
static const EVP_MD *sign_md(EVP_PKEY *pkey)
{
  int bits = EVP_PKEY_get_bits(pkey);

  if (EVP_PKEY_is_a(pkey, "EC") && bits > 384)
    return EVP_sha512();
  if (EVP_PKEY_is_a(pkey, "EC") && bits > 256)
    return EVP_sha384();
  return EVP_sha256();
}

static int months_after(time_t from, int months, time_t *out)
{
  struct tm tm;

  if (!gmtime_r(&from, &tm))
    return -1;
  tm.tm_mon += months;
  tm.tm_year += tm.tm_mon / 12;
  tm.tm_mon %= 12;
  *out = timegm(&tm);
  return *out == (time_t)-1 ? -1 : 0;
}

X509 *x509_selfsigned_new(EVP_PKEY *pkey, const cJSON *props, const char **err)
{
  X509 *cert = NULL, *ret = NULL;
  X509_NAME *name = NULL;
  STACK_OF(X509_EXTENSION) *exts = NULL;
  X509V3_CTX ctx;
  X509_EXTENSION *ext;
  unsigned char serial[16];
  BIGNUM *bn = NULL;
  const cJSON *vm;
  time_t now = time(NULL), end;
  int months = 12, i;

  *err = "Certificate creation failed.";
  name = subject_parse(cJSON_GetObjectItemCaseSensitive(props, "subject")->valuestring, err);
  if (!name)
    goto out;
  vm = cJSON_GetObjectItemCaseSensitive(props, "validity_months");
  if (cJSON_IsNumber(vm))
    months = vm->valueint;
  cert = X509_new();
  exts = policy_exts_new(props, pkey);
  if (!cert || !exts || RAND_bytes(serial, sizeof(serial)) != 1)
    goto out;
  serial[0] &= 0x7f; /* positive INTEGER */
  serial[0] |= 0x40; /* keep it 16 bytes long */
  bn = BN_bin2bn(serial, sizeof(serial), NULL);
  if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
    goto out;
  /* The service back-dates notBefore by 10 minutes and adds calendar months for notAfter. */
  if (months_after(now, months, &end) || !X509_set_version(cert, 2) ||
      !X509_time_adj_ex(X509_getm_notBefore(cert), 0, -600, &now) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert), end) || !X509_set_subject_name(cert, name) ||
      !X509_set_issuer_name(cert, name) || !X509_set_pubkey(cert, pkey))
    goto out;
  for (i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
    if (!X509_add_ext(cert, sk_X509_EXTENSION_value(exts, i), -1))
      goto out;
  }
  X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
  ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
  if (!ext || !X509_add_ext(cert, ext, -1)) {
    X509_EXTENSION_free(ext);
    goto out;
  }
  X509_EXTENSION_free(ext);
  ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
  if (!ext || !X509_add_ext(cert, ext, -1)) {
    X509_EXTENSION_free(ext);
    goto out;
  }
  X509_EXTENSION_free(ext);
  if (!X509_sign(cert, pkey, sign_md(pkey)))
    goto out;
  ret = cert;
  cert = NULL;
out:
  X509_free(cert);
  X509_NAME_free(name);
  BN_free(bn);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  return ret;
}

int x509_csr_der(EVP_PKEY *pkey, const cJSON *props, unsigned char **der, size_t *len,
                 const char **err)
{
  X509_REQ *req = NULL;
  X509_NAME *name = NULL;
  STACK_OF(X509_EXTENSION) *exts = NULL;
  unsigned char *buf = NULL;
  int n, rc = -1;

  *err = "CSR creation failed.";
  name = subject_parse(cJSON_GetObjectItemCaseSensitive(props, "subject")->valuestring, err);
  if (!name)
    goto out;
  req = X509_REQ_new();
  exts = policy_exts_new(props, pkey);
  if (!req || !exts || !X509_REQ_set_version(req, 0) || !X509_REQ_set_subject_name(req, name) ||
      !X509_REQ_set_pubkey(req, pkey) || !X509_REQ_add_extensions(req, exts) ||
      !X509_REQ_sign(req, pkey, sign_md(pkey)))
    goto out;
  n = i2d_X509_REQ(req, &buf);
  if (n <= 0)
    goto out;
  *der = buf;
  *len = (size_t)n;
  rc = 0;
out:
  X509_REQ_free(req);
  X509_NAME_free(name);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  return rc;
}

int x509_cert_der(X509 *cert, unsigned char **der, size_t *len)
{
  unsigned char *buf = NULL;
  int n = i2d_X509(cert, &buf);

  if (n <= 0)
    return -1;
  *der = buf;
  *len = (size_t)n;
  return 0;
}

int x509_thumbprint_b64url(X509 *cert, char *out, size_t outlen)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char *b64;
  size_t j;

  if (!X509_digest(cert, EVP_sha1(), md, &mdlen))
    return -1;
  b64 = emu_b64url_encode(md, mdlen);
  if (!b64)
    return -1;
  j = strlen(b64);
  if (j + 1 > outlen) {
    free(b64);
    return -1;
  }
  memcpy(out, b64, j + 1);
  free(b64);
  return 0;
}

static int64_t asn1_time_unix(const ASN1_TIME *t)
{
  struct tm tm;

  if (!t || !ASN1_TIME_to_tm(t, &tm))
    return 0;
  return (int64_t)timegm(&tm);
}

int64_t x509_not_before(X509 *cert)
{
  return asn1_time_unix(X509_get0_notBefore(cert));
}

int64_t x509_not_after(X509 *cert)
{
  return asn1_time_unix(X509_get0_notAfter(cert));
}

char *x509_pkcs12_b64_new(EVP_PKEY *pkey, X509 *leaf, STACK_OF(X509) * chain)
{
  PKCS12 *p12 = NULL;
  unsigned char *der = NULL;
  char *ret = NULL;
  int n;

  /* Empty password, 3DES key bag, unencrypted certificates, SHA-1 MAC: opens with an empty
   * password in OpenSSL 3 without the legacy provider and in other stacks alike. */
  p12 =
      PKCS12_create("", NULL, pkey, leaf, chain, pkey ? NID_pbe_WithSHA1And3_Key_TripleDES_CBC : -1,
                    -1, PKCS12_DEFAULT_ITER, 1, 0);
  if (!p12)
    goto out;
  n = i2d_PKCS12(p12, &der);
  if (n <= 0)
    goto out;
  ret = emu_b64_encode(der, (size_t)n);
  OPENSSL_cleanse(der, (size_t)n);
out:
  OPENSSL_free(der);
  PKCS12_free(p12);
  return ret;
}

/* Take the contents of a memory BIO as a NUL-terminated malloc'd string, wiping the BIO. */
static char *bio_take_string(BIO *bio)
{
  BUF_MEM *mem = NULL;
  char *ret;

  BIO_get_mem_ptr(bio, &mem);
  if (!mem)
    return NULL;
  ret = malloc(mem->length + 1);
  if (ret) {
    memcpy(ret, mem->data, mem->length);
    ret[mem->length] = '\0';
  }
  OPENSSL_cleanse(mem->data, mem->length);
  return ret;
}

char *x509_pem_new(EVP_PKEY *pkey, X509 *leaf, STACK_OF(X509) * chain)
{
  BIO *bio = BIO_new(BIO_s_mem());
  char *ret = NULL;
  int i;

  if (!bio)
    return NULL;
  if (pkey && !PEM_write_bio_PKCS8PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL))
    goto out;
  if (!PEM_write_bio_X509(bio, leaf))
    goto out;
  for (i = 0; i < sk_X509_num(chain); i++) {
    if (!PEM_write_bio_X509(bio, sk_X509_value(chain, i)))
      goto out;
  }
  ret = bio_take_string(bio);
out:
  BIO_free(bio);
  return ret;
}

int x509_matches_key(X509 *cert, EVP_PKEY *pkey)
{
  EVP_PKEY *pub = X509_get0_pubkey(cert);

  return pub && EVP_PKEY_eq(pub, pkey) == 1;
}

/* Split certificates into the leaf (matching pkey) and the rest. Takes ownership of certs. */
static int pick_leaf(EVP_PKEY *pkey, STACK_OF(X509) * certs, X509 **leaf, STACK_OF(X509) * *chain,
                     const char **err)
{
  int i;

  for (i = 0; i < sk_X509_num(certs); i++) {
    if (x509_matches_key(sk_X509_value(certs, i), pkey)) {
      *leaf = sk_X509_delete(certs, i);
      *chain = certs;
      return 0;
    }
  }
  *err = "The certificate does not match the private key.";
  sk_X509_pop_free(certs, X509_free);
  return -1;
}

static int parse_pem(const char *value, EVP_PKEY **pkey, X509 **leaf, STACK_OF(X509) * *chain,
                     const char **err)
{
  BIO *bio = NULL;
  STACK_OF(X509) *certs = NULL;
  EVP_PKEY *key = NULL;
  X509 *cert;
  int rc = -1;

  certs = sk_X509_new_null();
  bio = BIO_new_mem_buf(value, -1);
  if (!certs || !bio) {
    *err = "Out of memory.";
    goto out;
  }
  key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
  if (!key) {
    *err = "The PEM value holds no readable unencrypted private key.";
    goto out;
  }
  (void)BIO_reset(bio);
  while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    if (!sk_X509_push(certs, cert)) {
      X509_free(cert);
      *err = "Out of memory.";
      goto out;
    }
  }
  if (sk_X509_num(certs) == 0) {
    *err = "The PEM value holds no certificate.";
    goto out;
  }
  rc = pick_leaf(key, certs, leaf, chain, err);
  certs = NULL;
  if (rc == 0) {
    *pkey = key;
    key = NULL;
  }
out:
  ERR_clear_error();
  BIO_free(bio);
  EVP_PKEY_free(key);
  sk_X509_pop_free(certs, X509_free);
  return rc;
}

static int parse_pkcs12(const char *value, const char *password, EVP_PKEY **pkey, X509 **leaf,
                        STACK_OF(X509) * *chain, const char **err)
{
  unsigned char *der = NULL;
  const unsigned char *p;
  size_t len = 0;
  PKCS12 *p12 = NULL;
  EVP_PKEY *key = NULL;
  X509 *cert = NULL;
  STACK_OF(X509) *ca = NULL;
  int rc = -1;

  if (emu_b64_decode(value, &der, &len)) {
    *err = "The certificate value is not valid base64.";
    goto out;
  }
  p = der;
  p12 = d2i_PKCS12(NULL, &p, (long)len);
  if (!p12) {
    *err = "The certificate value is not a PKCS#12 (PFX) structure.";
    goto out;
  }
  if (!PKCS12_parse(p12, password ? password : "", &key, &cert, &ca)) {
    *err = "The PKCS#12 could not be read: wrong password or unsupported encryption.";
    goto out;
  }
  if (!key) {
    *err = "The PKCS#12 holds no private key.";
    goto out;
  }
  if (!ca)
    ca = sk_X509_new_null();
  if (!ca) {
    *err = "Out of memory.";
    goto out;
  }
  if (cert && !sk_X509_insert(ca, cert, 0)) {
    *err = "Out of memory.";
    goto out;
  }
  cert = NULL;
  rc = pick_leaf(key, ca, leaf, chain, err);
  ca = NULL;
  if (rc == 0) {
    *pkey = key;
    key = NULL;
  }
out:
  ERR_clear_error();
  if (der) {
    OPENSSL_cleanse(der, len);
    free(der);
  }
  PKCS12_free(p12);
  EVP_PKEY_free(key);
  X509_free(cert);
  sk_X509_pop_free(ca, X509_free);
  return rc;
}

int x509_parse_import(const char *value, const char *password, int is_pem, EVP_PKEY **pkey,
                      X509 **leaf, STACK_OF(X509) * *chain, const char **err)
{
  if (strlen(value) > X509_MAX_IMPORT) {
    *err = "The certificate value is too large.";
    return -1;
  }
  if (is_pem)
    return parse_pem(value, pkey, leaf, chain, err);
  return parse_pkcs12(value, password, pkey, leaf, chain, err);
}

X509 *x509_from_b64_der(const char *b64, const char **err)
{
  unsigned char *der;
  const unsigned char *p;
  size_t len = 0;
  X509 *cert = NULL;

  if (emu_b64_decode(b64, &der, &len)) {
    *err = "x5c holds a value that is not valid base64.";
    return NULL;
  }
  p = der;
  cert = d2i_X509(NULL, &p, (long)len);
  if (!cert || p != der + len) {
    X509_free(cert);
    cert = NULL;
    *err = "x5c holds a value that is not a DER certificate.";
  }
  ERR_clear_error();
  free(der);
  return cert;
}
