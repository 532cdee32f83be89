#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks on the code blocks of docs/*.md and README.md, so that examples cannot drift
(docs/testing.md, "Docs checks").

json: every JSON block is a module configuration that the module's own loader accepts. A fenced
  block is JSON when its info string starts with `json` or its first non-blank character is `{`.
  Each one is written to a file (mode 0600) and loaded by config_check (akv_config_load, as
  C_Initialize does) with no AKV_PKCS11_* or AZURE_* variable set. A JSON block that is not a
  module configuration (a REST reply, an audit line, the emulator's ready file) says so in its
  info string: ```json not-config. Those are skipped and counted.

module-paths: every `pkcs11-tool --module X` and `p11tool --provider X` in a fenced block (the
  commands a reader copies) names the module by an absolute path, or by a variable ($M,
  "$AKV_PKCS11_MODULE") that the same page assigns (M=...). A bare `akv-pkcs11.so` cannot be loaded: dlopen searches the library path, not p11-kit's module
  directory.

Failures are reported as FILE:LINE: message.
Usage: doc_blocks.py json SOURCE_ROOT CONFIG_CHECK | doc_blocks.py module-paths SOURCE_ROOT
Exit 0 = all good, 1 = a block fails, 2 = usage error.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

FENCE = re.compile(r'^\s*```(.*)$')
MODULE_ARG = re.compile(r'\b(pkcs11-tool|p11tool)\b[^`\n]*?\s--(module|provider)[ =]("[^"]*"|\'[^\']*\'|\S+)')


def documents(root):
    docs = sorted(glob.glob(os.path.join(root, 'docs', '*.md')))
    readme = os.path.join(root, 'README.md')
    if os.path.exists(readme):
        docs.append(readme)
    return docs


def blocks(path):
    """(info string, first line number of the body, body lines) of every fenced block."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        info, start, j = m.group(1).strip(), i + 2, i + 1
        while j < len(lines) and not re.match(r'^\s*```\s*$', lines[j]):
            j += 1
        out.append((info, start, lines[i + 1:j]))
        i = j + 1
    return out


def local_files(text, tmp):
    """The block with each file it names under /etc/akv-pkcs11/ that the loader reads (a
    `*_file` or `*_path` field other than the log, audit and cache files, e.g.
    client_secret_file) replaced by a 0600 placeholder file in tmp: the reader's machine has
    them, the test machine does not. An `attestation_root` there gets a self-signed certificate
    (made with openssl), as the loader reads and checks it."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    paths, roots = set(), set()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if (isinstance(x, str) and
                        (k.endswith(('_file', '_path')) or k == 'attestation_root') and
                        k not in ('log_file', 'audit_file', 'cache_file') and
                        x.startswith('/etc/akv-pkcs11/')):
                    paths.add(x)
                    if k == 'attestation_root':
                        roots.add(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(doc)
    for p in sorted(paths):
        local = os.path.join(tmp, 'etc', p[len('/etc/'):])
        os.makedirs(os.path.dirname(local), mode=0o700, exist_ok=True)
        if not os.path.exists(local) and p in roots:
            subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                            'ec_paramgen_curve:P-256', '-nodes', '-keyout', os.devnull,
                            '-subj', '/CN=placeholder root', '-days', '1', '-out', local],
                           check=True, capture_output=True, timeout=30)
            os.chmod(local, 0o644)  # the loader refuses a root file others can write
        if not os.path.exists(local):
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w') as f:
                f.write('placeholder-not-a-secret\n')
        text = text.replace('"%s"' % p, json.dumps(local))
    return text


def check_json(root, checker):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('AKV_PKCS11_', 'AZURE_', 'IDENTITY_', 'MSI_', 'IMDS_'))}
    checked, skipped, failed = 0, 0, 0
    with tempfile.TemporaryDirectory(prefix='akv-doc-json.') as tmp:
        env['HOME'] = tmp
        env['XDG_CONFIG_HOME'] = os.path.join(tmp, '.config')
        files = {}
        for doc in documents(root):
            rel = os.path.relpath(doc, root)
            for info, line, body in blocks(doc):
                words = info.split()
                text = '\n'.join(body)
                is_json = (words and words[0] == 'json') or text.lstrip().startswith('{')
                if not is_json:
                    continue
                if 'not-config' in words:
                    skipped += 1
                    continue
                text = local_files(text, tmp)
                name = os.path.join(tmp, '%03d.json' % len(files))
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, 'w', encoding='utf-8') as f:
                    f.write(text + '\n')
                files[name] = '%s:%d' % (rel, line)
        if files:
            r = subprocess.run([checker] + list(files), env=env, capture_output=True, text=True,
                               timeout=60)
            seen = set()
            for out_line in r.stdout.splitlines():
                name, _, msg = out_line.partition('\t')
                if name not in files:
                    continue
                seen.add(name)
                checked += 1
                if msg != 'ok':
                    failed += 1
                    print('%s: the module rejects this configuration block: %s'
                          % (files[name], msg.replace(name, 'the block')))
            for name in files:
                if name not in seen:
                    failed += 1
                    print('%s: config_check gave no answer (exit %d): %s'
                          % (files[name], r.returncode, r.stderr.strip()[-300:]))
    print('# %d configuration blocks loaded, %d failed, %d marked not-config' %
          (checked, failed, skipped))
    if checked < 2:
        print('# expected at least 2 configuration blocks in docs/ and README.md')
        return 1
    return 1 if failed else 0


def check_module_paths(root):
    checked, failed = 0, 0
    for doc in documents(root):
        rel = os.path.relpath(doc, root)
        with open(doc, encoding='utf-8') as f:
            text = f.read()
        code = [(start + k, line) for _, start, body in blocks(doc)
                for k, line in enumerate(body)]
        for n, line in code:
            for m in MODULE_ARG.finditer(line):
                arg = m.group(3).strip('"\'')
                checked += 1
                if arg.startswith('/'):
                    continue
                var = re.fullmatch(r'\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?', arg)
                if var and re.search(r'(^|[\s;(`])%s=' % re.escape(var.group(1)), text, re.M):
                    continue
                failed += 1
                if var:
                    print('%s:%d: %s --%s %s: the page never assigns %s (add e.g. '
                          '%s=/usr/lib/x86_64-linux-gnu/pkcs11/akv-pkcs11.so)'
                          % (rel, n, m.group(1), m.group(2), m.group(3), var.group(1),
                             var.group(1)))
                else:
                    print('%s:%d: %s --%s %s: not an absolute path (dlopen does not search '
                          'p11-kit\'s module directory; use /usr/lib/x86_64-linux-gnu/pkcs11/'
                          'akv-pkcs11.so or a variable the page sets)'
                          % (rel, n, m.group(1), m.group(2), m.group(3)))
    print('# %d module paths checked, %d failed' % (checked, failed))
    if checked < 10:
        print('# expected at least 10 module paths in docs/ and README.md')
        return 1
    return 1 if failed else 0


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == 'json':
        return check_json(a[1], a[2])
    if len(a) == 2 and a[0] == 'module-paths':
        return check_module_paths(a[1])
    print(__doc__.strip().splitlines()[-2], file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
