#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""docs/troubleshooting.md documents every error and warning the module logs.

Finds each akv_err/akv_warn call (and akv_log at ERROR/WARN level) in src/, takes the longest
literal run of its format string (the text between printf conversions) and requires it in the
document. Messages whose format has no literal run of at least MIN_FRAGMENT characters (for
example "%s", which forwards a message built elsewhere) are listed but not required.

Usage: doc_messages.py SOURCE_ROOT    exit 0 = all documented, 1 = some missing, 2 = usage error.
"""
import glob
import os
import re
import sys

MIN_FRAGMENT = 10
CALL = re.compile(r'\bakv_(err|warn)\s*\(|\bakv_log\s*\(\s*[^,]*AKV_LOG_(ERROR|WARN)')
CONVERSION = re.compile(r'%[-+ #0]*(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|z|j|t)?[diouxXcsp%]')


def call_args(text, start):
    """Text between the call's opening parenthesis (at or after start) and its closing one."""
    i = text.index('(', start) + 1
    depth, j = 1, i
    while depth:
        c = text[j]
        if c == '"':
            j += 1
            while text[j] != '"':
                j += 2 if text[j] == '\\' else 1
        elif c == '(':
            depth += 1
        elif c == ')':
            depth -= 1
        j += 1
    return text[i:j - 1]


def format_string(args):
    """The adjacent string literals that form the format argument."""
    m = re.search(r'"(?:[^"\\]|\\.)*"(?:\s*"(?:[^"\\]|\\.)*")*', args)
    if not m:
        return None
    lits = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(0))
    return ''.join(lits).replace('\\"', '"').replace('\\\\', '\\')


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = sys.argv[1]
    doc_path = os.path.join(root, 'docs', 'troubleshooting.md')
    try:
        with open(doc_path, encoding='utf-8') as f:
            doc = f.read()
    except OSError as e:
        print(f'cannot read {doc_path}: {e}', file=sys.stderr)
        return 2
    missing, checked, skipped = [], 0, 0
    for path in sorted(glob.glob(os.path.join(root, 'src', '**', '*.c'), recursive=True)):
        if path.endswith(os.path.join('util', 'log.c')):
            continue
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for m in CALL.finditer(text):
            fmt = format_string(call_args(text, m.start()))
            line = text.count('\n', 0, m.start()) + 1
            where = f'{os.path.relpath(path, root)}:{line}'
            if fmt is None:
                print(f'# {where}: no literal format, not checked')
                skipped += 1
                continue
            fragment = max((p.strip(' :;,') for p in CONVERSION.split(fmt) if p), key=len,
                           default='')
            if len(fragment) < MIN_FRAGMENT:
                print(f'# {where}: "{fmt}" has no distinctive text, not checked')
                skipped += 1
                continue
            checked += 1
            if fragment not in doc:
                missing.append((where, fmt, fragment))
    for where, fmt, fragment in missing:
        print(f'not documented: {where}: "{fmt}" (looked for "{fragment}")')
    print(f'# {checked} messages checked, {len(missing)} not documented, {skipped} not checkable')
    return 1 if missing or checked == 0 else 0


if __name__ == '__main__':
    sys.exit(main())
