#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the layering of src/ (docs/design.md "Layers").

usage: check_layers.py SRC_DIR MAX_CYCLE ARCHIVE...

From `nm` of the static archives that make up akv-pkcs11.so it computes the linker's file graph
(an edge a -> b when a.c uses a symbol b.c defines) and its strongly connected components, and
fails when
  (a) a file uses a file of a higher layer, by symbol (nm) or by an #include "..." line;
  (b) files form a cycle of more than MAX_CYCLE files.
It prints the graph summary: files, edges, the cycles and their sizes.
"""
import os
import re
import subprocess
import sys

# Highest first: a file may use files of its own layer and of the layers after it.
LAYERS = ["p11", "crypto", "token", "store", "core", "kv", "util"]


def layer_of(rel):
    top = rel.split("/", 1)[0] if "/" in rel else ""
    return LAYERS.index(top) if top in LAYERS else None


def sources(src):
    """Maps meson's object name (path with '/' as '_', plus .o) to the path under src."""
    out = {}
    for root, _dirs, files in os.walk(src):
        for f in files:
            if f.endswith(".c"):
                rel = os.path.relpath(os.path.join(root, f), src)
                out[rel.replace("/", "_") + ".o"] = rel
    return out


def nm_graph(archives, objmap):
    defined, used = {}, {}
    for ar in archives:
        res = subprocess.run(["nm", "-A", ar], capture_output=True, text=True, check=True)
        for line in res.stdout.splitlines():
            # archive:member.o:0000 T name   or   archive:member.o:         U name
            m = re.match(r"^[^:]+:([^:]+):\s*(?:[0-9a-fA-F]+)?\s+(\S)\s+(\S+)$", line)
            if not m:
                continue
            member, kind, sym = m.groups()
            rel = objmap.get(os.path.basename(member))
            if rel is None:
                continue
            if kind == "U":
                used.setdefault(rel, set()).add(sym)
            elif kind in "TDBRVWG":
                defined[sym] = rel
            used.setdefault(rel, set())
    edges = {}
    for f, syms in used.items():
        for s in syms:
            d = defined.get(s)
            if d and d != f:
                edges.setdefault(f, {}).setdefault(d, set()).add(s)
    return set(used), edges


def include_edges(src, files):
    """a -> header's directory: every #include "x.h" resolved against src/."""
    out = []
    for rel in sorted(files):
        path = os.path.join(src, rel)
        with open(path, encoding="utf-8") as fh:
            for no, line in enumerate(fh, 1):
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if not m:
                    continue
                inc = m.group(1)
                cand = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
                if not os.path.exists(os.path.join(src, cand)):
                    cand = os.path.normpath(inc)
                if os.path.exists(os.path.join(src, cand)):
                    out.append((rel, no, cand))
    return out


def sccs(nodes, edges):
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        # Iterative Tarjan: the graph is small, but recursion depth should not depend on it.
        work = [(v, iter(sorted(edges.get(v, {}))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    comps.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter[0]
                counter[0] += 1
                stack.append(nxt)
                on.add(nxt)
                work.append((nxt, iter(sorted(edges.get(nxt, {})))))
            elif nxt in on:
                low[node] = min(low[node], index[nxt])

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return comps


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    src, max_cycle, archives = argv[1], int(argv[2]), argv[3:]
    objmap = sources(src)
    nodes, edges = nm_graph(archives, objmap)
    n_edges = sum(len(v) for v in edges.values())
    comps = [c for c in sccs(nodes, edges) if len(c) > 1]
    comps.sort(key=len, reverse=True)
    print(f"files: {len(nodes)}, edges: {n_edges}, cycles: {len(comps)}, "
          f"largest cycle: {len(comps[0]) if comps else 0} files")
    for c in comps:
        print(f"  cycle of {len(c)}: {' '.join(c)}")
    bad = 0
    for a in sorted(edges):
        for b in sorted(edges[a]):
            la, lb = layer_of(a), layer_of(b)
            if la is not None and lb is not None and lb < la:
                syms = " ".join(sorted(edges[a][b])[:4])
                print(f"UPWARD (nm): {a} uses {b} ({syms})")
                bad += 1
    for a, no, inc in include_edges(src, nodes):
        la, lb = layer_of(a), layer_of(inc)
        if la is not None and lb is not None and lb < la:
            print(f"UPWARD (include): {a}:{no} includes {inc}")
            bad += 1
    for c in comps:
        if len(c) > max_cycle:
            print(f"CYCLE: {len(c)} files > {max_cycle}: {' '.join(c)}")
            bad += 1
    unlayered = sorted(n for n in nodes if layer_of(n) is None)
    if unlayered:
        print(f"files outside a layer folder: {' '.join(unlayered)}")
    print("layers OK" if not bad else f"{bad} layering error(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
