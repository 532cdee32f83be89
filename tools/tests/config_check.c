/* SPDX-License-Identifier: Apache-2.0 */
/* config_check FILE...: loads each file with the module's configuration loader (akv_config_load,
 * what C_Initialize calls with a path in pReserved; no network I/O) and prints one line per file,
 * "FILE<TAB>ok" or "FILE<TAB>ERROR-MESSAGE". Exit 0 when every file loads, 1 when one does not,
 * 2 on a usage error. Used by tools/tests/doc_blocks.py to check the configuration examples in
 * docs/ (docs/testing.md, "Docs checks"). */
#include <stdio.h>

#include "util/config.h"

int main(int argc, char **argv)
{
  int i, bad = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: config_check FILE...\n");
    return 2;
  }
  for (i = 1; i < argc; i++) {
    struct akv_config *cfg = NULL;
    char err[1024] = "";
    if (akv_config_load(argv[i], &cfg, err, sizeof(err)) != 0) {
      printf("%s\t%s\n", argv[i], err[0] ? err : "rejected (no message)");
      bad = 1;
    } else {
      printf("%s\tok\n", argv[i]);
      akv_config_free(cfg);
    }
  }
  return bad;
}
