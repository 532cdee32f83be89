/* SPDX-License-Identifier: Apache-2.0 */
/* akv-p11 audit verify FILE...: checks the hash chain of audit files (docs/audit.md "Chain"):
 * every line's seq follows the line before it and its prev is the SHA-256 of that line's bytes; a
 * later file's first line continues the earlier file's last. Reports the first broken, missing or
 * reordered line with its number. The rules are those of the writer, src/util/audit.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"
#include "util/audit.h"

/* One line of a file: its bytes (newline included when present) and parse. */
struct vline {
  char buf[AKV_AUDIT_LINE_MAX + 2];
  size_t len;
  int complete; /* ends with a newline */
  int toolong;  /* longer than AKV_AUDIT_LINE_MAX: only its first bytes are in buf */
  int ok;       /* the chain fields parsed */
  struct akv_audit_link link;
  char why[200];
};

/* Reads the next line; 0 at the end of the file, 1 with a line, -1 on a read error. */
static int read_line(FILE *f, struct vline *l)
{
  int c;
  l->len = 0;
  l->complete = 0;
  l->toolong = 0;
  while ((c = getc(f)) != EOF) {
    if (l->len < AKV_AUDIT_LINE_MAX)
      l->buf[l->len++] = (char)c;
    else
      l->toolong = 1;
    if (c == '\n') {
      l->complete = 1;
      break;
    }
  }
  if (ferror(f))
    return -1;
  if (l->len == 0 && !l->toolong)
    return 0;
  l->ok = 0;
  l->why[0] = '\0';
  if (l->toolong)
    snprintf(l->why, sizeof(l->why), "longer than %d bytes: not an audit line", AKV_AUDIT_LINE_MAX);
  else if (!l->complete)
    snprintf(l->why, sizeof(l->why), "incomplete: no newline at its end");
  else
    l->ok = akv_audit_parse_link(l->buf, l->len - 1, &l->link, l->why, sizeof(l->why)) == 0;
  return 1;
}

struct vstate {
  int have_prev;                          /* a line (of this or the previous file) was seen */
  char prev_hash[AKV_AUDIT_HASH_HEX + 1]; /* hash of that line */
  uint64_t prev_seq;                      /* its seq */
  const char *prev_file;                  /* the previous file, NULL within the first */
};

/* After the first problem: the first later line where the module restarted the chain. */
static void note_restart(FILE *f, const char *file, unsigned long lineno, struct vline *l)
{
  int r;
  while ((r = read_line(f, l)) == 1) {
    lineno++;
    if (l->ok && strcmp(l->link.chain, "restart") == 0) {
      printf("%s:%lu: note: the module started a new chain here (%s)\n", file, lineno,
             l->link.reason[0] ? l->link.reason : "no reason given");
      return;
    }
  }
}

static int verify_file(const char *file, struct vstate *vs)
{
  struct vline *l = malloc(sizeof(*l)), *next = malloc(sizeof(*next));
  FILE *f = fopen(file, "r");
  unsigned long lineno = 0;
  uint64_t first_seq = 0;
  int r, ret = TOOL_PROBLEM, continued = 0;
  char hash[AKV_AUDIT_HASH_HEX + 1];
  if (!f || !l || !next) {
    fprintf(stderr, "akv-p11: cannot read %s: %s\n", file, f ? strerror(ENOMEM) : strerror(errno));
    ret = TOOL_USAGE;
    goto out;
  }
  while ((r = read_line(f, l)) == 1) {
    lineno++;
    if (!l->ok) {
      printf("%s:%lu: %s\n", file, lineno, l->why);
      note_restart(f, file, lineno, next);
      goto out;
    }
    if (l->link.seq == 1) {
      const char *c = l->link.chain;
      if (lineno == 1 && vs->prev_file) {
        /* The first line of a later file continues the earlier file's last line. */
        if (strcmp(c, "rotated") != 0) {
          printf("%s:1: does not continue %s: its chain is \"%s\", not \"rotated\"\n", file,
                 vs->prev_file, c[0] ? c : "(none)");
          goto out;
        }
        if (strcmp(l->link.prev, vs->prev_hash) != 0) {
          printf("%s:1: does not continue %s: prev %.16s... is not the hash of its last line "
                 "(%.16s...): lines are missing between the files, or the files are out of "
                 "order\n",
                 file, vs->prev_file, l->link.prev, vs->prev_hash);
          goto out;
        }
      } else if (lineno == 1) {
        if (strcmp(c, "new") == 0) {
          if (strcmp(l->link.prev, AKV_AUDIT_ZERO_HASH) != 0) {
            printf("%s:1: a new chain whose prev is not 64 zeros\n", file);
            goto out;
          }
        } else if (strcmp(c, "rotated") == 0 || strcmp(c, "restart") == 0) {
          /* Its link is to a file (or the lines before a restart) not given. */
          continued = 1;
        } else {
          printf("%s:1: seq 1 without a \"chain\" field\n", file);
          goto out;
        }
      } else if (strcmp(c, "restart") == 0) {
        /* The module restarts a chain only after a line it cannot read (docs/audit.md). */
        printf("%s:%lu: the chain restarts (%s) although line %lu is a valid audit line: a "
               "line was inserted or changed\n",
               file, lineno, l->link.reason[0] ? l->link.reason : "no reason given", lineno - 1);
        goto out;
      } else {
        printf("%s:%lu: seq 1 in the middle of the file (expected %llu): a line was inserted "
               "or the file was edited\n",
               file, lineno, (unsigned long long)(vs->prev_seq + 1));
        goto out;
      }
      if (lineno == 1)
        first_seq = 1;
    } else {
      uint64_t want = lineno == 1 ? 0 : vs->prev_seq + 1;
      if (lineno == 1) {
        printf("%s:1: seq %llu: the file does not start a chain (its first lines are missing)\n",
               file, (unsigned long long)l->link.seq);
        goto out;
      }
      if (l->link.chain[0]) {
        printf("%s:%lu: \"chain\":\"%s\" on a line with seq %llu\n", file, lineno, l->link.chain,
               (unsigned long long)l->link.seq);
        goto out;
      }
      if (l->link.seq != want) {
        /* Tell a swap from a gap by the line after it. */
        int rn = read_line(f, next);
        if (l->link.seq > want && rn == 1 && next->ok && next->link.seq == want)
          printf("%s:%lu: lines %lu and %lu are out of order (seq %llu comes before seq %llu)\n",
                 file, lineno, lineno, lineno + 1, (unsigned long long)l->link.seq,
                 (unsigned long long)want);
        else if (l->link.seq > want)
          printf("%s:%lu: %llu line(s) missing before this line (seq %llu follows seq %llu)\n",
                 file, lineno, (unsigned long long)(l->link.seq - want),
                 (unsigned long long)l->link.seq, (unsigned long long)vs->prev_seq);
        else
          printf("%s:%lu: seq %llu follows seq %llu: a line is repeated or out of order\n", file,
                 lineno, (unsigned long long)l->link.seq, (unsigned long long)vs->prev_seq);
        goto out;
      }
      if (strcmp(l->link.prev, vs->prev_hash) != 0) {
        printf("%s:%lu: line %lu was changed after it was written: this line's prev %.16s... is "
               "not its hash %.16s...\n",
               file, lineno - 1, lineno - 1, l->link.prev, vs->prev_hash);
        goto out;
      }
    }
    akv_audit_hash(l->buf, l->len, hash);
    memcpy(vs->prev_hash, hash, sizeof(hash));
    vs->prev_seq = l->link.seq;
    vs->have_prev = 1;
  }
  if (r < 0) {
    fprintf(stderr, "akv-p11: cannot read %s: %s\n", file, strerror(errno));
    ret = TOOL_USAGE;
    goto out;
  }
  if (lineno == 0)
    printf("%s: empty\n", file);
  else
    printf("%s: %lu lines, chain valid (seq %llu to %llu)%s; last line's hash %s\n", file, lineno,
           (unsigned long long)first_seq, (unsigned long long)vs->prev_seq,
           continued ? ", continuing lines not given" : "", vs->prev_hash);
  ret = TOOL_OK;
out:
  if (f)
    fclose(f);
  free(l);
  free(next);
  return ret;
}

int tool_audit_verify(int nfiles, char **files)
{
  struct vstate vs;
  memset(&vs, 0, sizeof(vs));
  for (int i = 0; i < nfiles; i++) {
    int rc = verify_file(files[i], &vs);
    if (rc != TOOL_OK)
      return rc;
    if (vs.have_prev)
      vs.prev_file = files[i];
  }
  return TOOL_OK;
}
