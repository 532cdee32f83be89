/* SPDX-License-Identifier: Apache-2.0 */
/* hostile_server - a tiny HTTPS "vault" that misbehaves on purpose (docs/security.md), for what the
 * emulator's fault modes cannot do.
 *
 *   hostile_server MODE CERT_PEM KEY_PEM READY_FILE
 *
 * Serves on 127.0.0.1 (ephemeral port) an Entra-like token endpoint (POST .../oauth2/v2.0/token)
 * and a vault with one EC P-256 key "k1" (a real key generated at startup; its public key is
 * written next to the ready file as READY_FILE.pub.pem). MODE selects the misbehaviour:
 *   normal        everything correct (the harness check: a signature verifies)
 *   throttle-date the first sign request gets 429 with Retry-After as an HTTP-date 2 s ahead
 *   oversize      the sign reply is a 2 MiB JSON document
 *   badjson       the sign reply is not JSON
 *   wrongtype     the sign reply's "value" is a number
 *   badb64        the sign reply's "value" is not base64url
 *   shortsig      the sign reply's ES256 signature has 63 bytes
 *   slowbody      the sign reply announces 4096 bytes and drips one byte every 2 s
 *   redirect      the sign reply is 302 to https://evil.example.com/
 *   jwkmismatch   the key's JWK says kty EC, crv P-256 but carries RSA members and no x/y
 *   challenge     every vault request gets 401 with a challenge for https://management.azure.com
 * GET /stats returns {"vault_requests","with_bearer","token_requests","foreign_scope_tokens",
 * "sign_requests"}. Each connection has its own thread; SIGTERM stops the server. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#define REQ_MAX (64 * 1024)

static struct {
  const char *mode;
  SSL_CTX *ctx;
  EVP_PKEY *key;
  char x[64], y[64]; /* base64url coordinates */
  unsigned port;
  atomic_long vault_requests, with_bearer, token_requests, foreign_scope, sign_requests;
} g;

static void b64url(const unsigned char *in, size_t n, char *out, size_t cap)
{
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0;
  for (size_t i = 0; i < n && o + 4 < cap; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                 (i + 2 < n ? in[i + 2] : 0);
    out[o++] = tab[(v >> 18) & 63];
    out[o++] = tab[(v >> 12) & 63];
    if (i + 1 < n)
      out[o++] = tab[(v >> 6) & 63];
    if (i + 2 < n)
      out[o++] = tab[v & 63];
  }
  out[o] = '\0';
}

static int send_all(SSL *ssl, const char *p, size_t n)
{
  while (n) {
    int w = SSL_write(ssl, p, (int)(n > 65536 ? 65536 : n));
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int reply(SSL *ssl, int status, const char *extra_headers, const char *body)
{
  char head[1024];
  size_t bl = body ? strlen(body) : 0;
  snprintf(head, sizeof(head),
           "HTTP/1.1 %d X\r\nContent-Type: application/json; charset=utf-8\r\n"
           "Content-Length: %zu\r\n%s\r\n",
           status, bl, extra_headers ? extra_headers : "");
  if (send_all(ssl, head, strlen(head)) != 0)
    return -1;
  return bl ? send_all(ssl, body, bl) : 0;
}

/* An ES256 signature over digest (raw r||s), base64url, for the "normal" and "shortsig" modes. */
static int sign_es256(const unsigned char *digest, size_t dlen, size_t keep, char *out, size_t cap)
{
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(g.key, NULL);
  unsigned char der[128], raw[64];
  const unsigned char *p = der;
  size_t dl = sizeof(der);
  ECDSA_SIG *es = NULL;
  int ok = 0;
  if (c && EVP_PKEY_sign_init(c) == 1 && EVP_PKEY_sign(c, der, &dl, digest, dlen) == 1 &&
      (es = d2i_ECDSA_SIG(NULL, &p, (long)dl)) != NULL) {
    BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
    b64url(raw, keep, out, cap);
    ok = 1;
  }
  ECDSA_SIG_free(es);
  EVP_PKEY_CTX_free(c);
  return ok;
}

/* The "value" member of the sign request body, base64url-decoded into out (32 bytes max). */
static size_t request_digest(const char *body, unsigned char *out)
{
  const char *v = strstr(body, "\"value\"");
  char b64[128];
  size_t n = 0, o = 0;
  unsigned acc = 0;
  int bits = 0;
  if (!v || !(v = strchr(v + 7, '"')))
    return 0;
  v++;
  while (v[n] && v[n] != '"' && n < sizeof(b64) - 1) {
    b64[n] = v[n];
    n++;
  }
  b64[n] = '\0';
  for (size_t i = 0; i < n && o < 64; i++) {
    const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *q = strchr(tab, b64[i]);
    if (!q)
      return 0;
    acc = acc << 6 | (unsigned)(q - tab);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  return o;
}

static void handle_sign(SSL *ssl, const char *body)
{
  unsigned char dg[64];
  size_t dl = request_digest(body, dg);
  char sig[128], doc[512];
  const char *m = g.mode;
  long nth = atomic_fetch_add(&g.sign_requests, 1) + 1;
  if (strcmp(m, "throttle-date") == 0 && nth == 1) {
    char hdr[128];
    time_t when = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(hdr, sizeof(hdr), "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    reply(ssl, 429, hdr, "{\"error\":{\"code\":\"Throttled\",\"message\":\"slow down\"}}");
  } else if (strcmp(m, "oversize") == 0) {
    size_t n = 2u * 1024 * 1024;
    char *big = malloc(n + 1);
    if (!big)
      return;
    memset(big, ' ', n);
    memcpy(big, "{\"value\":\"", 10);
    big[n - 2] = '"';
    big[n - 1] = '}';
    big[n] = '\0';
    reply(ssl, 200, NULL, big);
    free(big);
  } else if (strcmp(m, "badjson") == 0) {
    reply(ssl, 200, NULL, "{\"kid\": \"x\", \"value\": [unterminated");
  } else if (strcmp(m, "wrongtype") == 0) {
    reply(ssl, 200, NULL, "{\"kid\":\"k\",\"value\":12345}");
  } else if (strcmp(m, "badb64") == 0) {
    reply(ssl, 200, NULL, "{\"kid\":\"k\",\"value\":\"!!not*base64url%%\"}");
  } else if (strcmp(m, "slowbody") == 0) {
    const char *head = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\n"
                       "Content-Length: 4096\r\n\r\n{";
    if (send_all(ssl, head, strlen(head)) != 0)
      return;
    for (int i = 0; i < 60; i++) { /* at most 2 minutes, then give up */
      sleep(2);
      if (send_all(ssl, " ", 1) != 0)
        return;
    }
  } else if (strcmp(m, "redirect") == 0) {
    reply(ssl, 302, "Location: https://evil.example.com/keys/k1/sign\r\n", "");
  } else if (dl == 32 &&
             sign_es256(dg, dl, strcmp(m, "shortsig") == 0 ? 63 : 64, sig, sizeof(sig))) {
    snprintf(doc, sizeof(doc),
             "{\"kid\":\"https://localhost:%u/keys/k1/"
             "0123456789abcdef0123456789abcdef\",\"value\":\"%s\"}",
             g.port, sig);
    reply(ssl, 200, NULL, doc);
  } else {
    reply(ssl, 400, NULL, "{\"error\":{\"code\":\"BadParameter\",\"message\":\"digest\"}}");
  }
}

static void handle(SSL *ssl, const char *method, const char *path, const char *headers,
                   const char *body)
{
  char doc[2048];
  if (strcmp(path, "/stats") == 0) {
    snprintf(doc, sizeof(doc),
             "{\"vault_requests\":%ld,\"with_bearer\":%ld,\"token_requests\":%ld,"
             "\"foreign_scope_tokens\":%ld,\"sign_requests\":%ld}",
             atomic_load(&g.vault_requests), atomic_load(&g.with_bearer),
             atomic_load(&g.token_requests), atomic_load(&g.foreign_scope),
             atomic_load(&g.sign_requests));
    reply(ssl, 200, NULL, doc);
    return;
  }
  if (strstr(path, "/oauth2/v2.0/token")) {
    atomic_fetch_add(&g.token_requests, 1);
    if (!strstr(body, "scope=https%3A%2F%2Fvault.azure.net%2F.default") &&
        !strstr(body, "scope=https://vault.azure.net/.default"))
      atomic_fetch_add(&g.foreign_scope, 1);
    reply(ssl, 200, NULL,
          "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
          "\"access_token\":\"eyJhostile.eyJtoken.c2ln\"}");
    return;
  }
  atomic_fetch_add(&g.vault_requests, 1);
  if (strcasestr(headers, "\nAuthorization: Bearer "))
    atomic_fetch_add(&g.with_bearer, 1);
  if (strcmp(g.mode, "challenge") == 0) {
    reply(ssl, 401,
          "WWW-Authenticate: Bearer authorization=\"https://login.microsoftonline.com/"
          "tid\", resource=\"https://management.azure.com\"\r\n",
          "{\"error\":{\"code\":\"Unauthorized\",\"message\":\"AKV10000\"}}");
    return;
  }
  if (strcmp(method, "GET") == 0 && strncmp(path, "/keys?", 6) == 0) {
    snprintf(doc, sizeof(doc),
             "{\"value\":[{\"kid\":\"https://localhost:%u/keys/k1\","
             "\"attributes\":{\"enabled\":true}}],\"nextLink\":null}",
             g.port);
    reply(ssl, 200, NULL, doc);
  } else if (strcmp(method, "GET") == 0 && strncmp(path, "/keys/k1", 8) == 0) {
    if (strcmp(g.mode, "jwkmismatch") == 0)
      snprintf(doc, sizeof(doc),
               "{\"key\":{\"kid\":\"https://localhost:%u/keys/k1/"
               "0123456789abcdef0123456789abcdef\",\"kty\":\"EC\",\"crv\":\"P-256\","
               "\"n\":\"%s%s\",\"e\":\"AQAB\",\"key_ops\":[\"sign\"]},"
               "\"attributes\":{\"enabled\":true}}",
               g.port, g.x, g.y);
    else
      snprintf(doc, sizeof(doc),
               "{\"key\":{\"kid\":\"https://localhost:%u/keys/k1/"
               "0123456789abcdef0123456789abcdef\",\"kty\":\"EC\",\"crv\":\"P-256\","
               "\"x\":\"%s\",\"y\":\"%s\",\"key_ops\":[\"sign\",\"verify\"]},"
               "\"attributes\":{\"enabled\":true}}",
               g.port, g.x, g.y);
    reply(ssl, 200, NULL, doc);
  } else if (strcmp(method, "POST") == 0 && strstr(path, "/sign?")) {
    handle_sign(ssl, body);
  } else {
    reply(ssl, 404, NULL, "{\"error\":{\"code\":\"NotFound\",\"message\":\"not here\"}}");
  }
}

/* One connection: keep-alive requests until the client closes or sends something odd. */
static void *conn_main(void *arg)
{
  int fd = (int)(intptr_t)arg;
  SSL *ssl = SSL_new(g.ctx);
  char *buf = malloc(REQ_MAX + 1);
  size_t len = 0;
  if (!ssl || !buf || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
    goto out;
  for (;;) {
    char *end, *cl, method[16], path[2048];
    size_t hlen, blen = 0;
    while (!(end = buf ? strstr(buf, "\r\n\r\n") : NULL)) {
      int r;
      if (len >= REQ_MAX)
        goto out;
      r = SSL_read(ssl, buf + len, (int)(REQ_MAX - len));
      if (r <= 0)
        goto out;
      len += (size_t)r;
      buf[len] = '\0';
    }
    hlen = (size_t)(end - buf) + 4;
    cl = strcasestr(buf, "\r\nContent-Length:");
    if (cl && cl < end)
      blen = strtoul(cl + 17, NULL, 10);
    if (blen > REQ_MAX - hlen)
      goto out;
    while (len < hlen + blen) {
      int r = SSL_read(ssl, buf + len, (int)(REQ_MAX - len));
      if (r <= 0)
        goto out;
      len += (size_t)r;
      buf[len] = '\0';
    }
    if (sscanf(buf, "%15s %2047s", method, path) != 2)
      goto out;
    {
      char saved = buf[hlen + blen];
      buf[hlen - 2] = '\0'; /* headers end */
      buf[hlen + blen] = '\0';
      handle(ssl, method, path, buf, buf + hlen);
      buf[hlen + blen] = saved;
    }
    memmove(buf, buf + hlen + blen, len - hlen - blen);
    len -= hlen + blen;
    buf[len] = '\0';
  }
out:
  if (ssl) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
  }
  free(buf);
  close(fd);
  return NULL;
}

int main(int argc, char **argv)
{
  int ls, one = 1;
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  BIGNUM *x = NULL, *y = NULL;
  unsigned char xb[32], yb[32];
  char tmp[4096];
  FILE *f;

  if (argc != 5) {
    fprintf(stderr, "usage: hostile_server MODE CERT_PEM KEY_PEM READY_FILE\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  g.mode = argv[1];
  g.ctx = SSL_CTX_new(TLS_server_method());
  if (!g.ctx || SSL_CTX_use_certificate_chain_file(g.ctx, argv[2]) != 1 ||
      SSL_CTX_use_PrivateKey_file(g.ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  g.key = EVP_EC_gen("P-256");
  if (!g.key || EVP_PKEY_get_bn_param(g.key, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
      EVP_PKEY_get_bn_param(g.key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1 ||
      BN_bn2binpad(x, xb, 32) != 32 || BN_bn2binpad(y, yb, 32) != 32)
    return 1;
  b64url(xb, 32, g.x, sizeof(g.x));
  b64url(yb, 32, g.y, sizeof(g.y));
  BN_free(x);
  BN_free(y);

  ls = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 64) != 0 ||
      getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
    perror("listen");
    return 1;
  }
  g.port = ntohs(sa.sin_port);
  snprintf(tmp, sizeof(tmp), "%s.pub.pem", argv[4]);
  f = fopen(tmp, "w");
  if (!f || PEM_write_PUBKEY(f, g.key) != 1)
    return 1;
  fclose(f);
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[4]);
  f = fopen(tmp, "w");
  if (!f)
    return 1;
  fprintf(f, "%u\n", g.port);
  fclose(f);
  if (rename(tmp, argv[4]) != 0)
    return 1;
  for (;;) {
    pthread_t th;
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR)
        continue;
      return 1;
    }
    if (pthread_create(&th, NULL, conn_main, (void *)(intptr_t)fd) != 0)
      close(fd);
    else
      pthread_detach(th);
  }
}
