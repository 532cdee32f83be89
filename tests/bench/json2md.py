#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Turns the JSON written by `akv-bench --json FILE` into the Markdown tables of docs/performance.md.

usage: python3 tests/bench/json2md.py build/bench.json > /tmp/results.md
"""
import json
import sys


def fmt(v, digits):
    return "n/a" if v is None else f"{v:.{digits}f}"


def sign_table(rows, key):
    out = [f"Sign, {key}:", "",
           "| thr | impl | ops/s | p50 ms | p99 ms | cpu µs/op | req/op |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["key"] != key:
            continue
        if not r["ran"]:
            out.append(f"| {r['threads']} | {r['impl']} | {r.get('note', 'not run')} | | | | |")
            continue
        out.append(f"| {r['threads']} | {r['impl']} | {fmt(r['ops_per_s'], 1)} | {fmt(r['p50_ms'], 3)} | "
                   f"{fmt(r['p99_ms'], 3)} | {fmt(r['cpu_us_per_op'], 1)} | {fmt(r['requests_per_op'], 3)} |")
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        d = json.load(f)
    out = [f"Run of {d['date']}: {d['cpus_online']} CPUs online, kernel {d.get('kernel', '?')}, "
           f"{d['phase_seconds']:g} s per phase, {d['cold_start_keys']} keys for cold start"
           f"{' (smoke)' if d['smoke'] else ''}.", ""]
    out += sign_table(d["sign"], "RSA-2048") + [""]
    out += sign_table(d["sign"], "EC P-256") + [""]
    out += ["Ratios (module/raw and module/sdk; ops/s higher is better, cpu/op lower is better):", "",
            "| key | thr | module/raw ops/s | module/raw cpu/op | module/sdk ops/s | module/sdk cpu/op |",
            "|---|---:|---:|---:|---:|---:|"]
    for r in d["ratios"]:
        out.append(f"| {r['key']} | {r['threads']} | {fmt(r.get('module_raw_ops'), 3)} | "
                   f"{fmt(r.get('module_raw_cpu'), 3)} | {fmt(r.get('module_sdk_ops'), 3)} | "
                   f"{fmt(r.get('module_sdk_cpu'), 3)} |")
    out += ["", "Cached lookup (C_FindObjects + C_GetAttributeValue):", "",
            "| thr | ops/s | p50 ms | p99 ms | cpu µs/op | vault requests |",
            "|---:|---:|---:|---:|---:|---:|"]
    for r in d["cached_lookup"]:
        if r["ran"]:
            out.append(f"| {r['threads']} | {fmt(r['ops_per_s'], 1)} | {fmt(r['p50_ms'], 4)} | "
                       f"{fmt(r['p99_ms'], 4)} | {fmt(r['cpu_us_per_op'], 2)} | {r['requests_total']:.0f} |")
        else:
            out.append(f"| {r['threads']} | {r.get('note', 'not run')} | | | | |")
    c = d["cold_start"]

    def by_op(m):
        ops = m.get("requests_by_operation", {})
        return (f"{m['requests_total']:.0f} ({ops.get('keys.list', 0):.0f} list, {ops.get('keys.get', 0):.0f} get, "
                f"{ops.get('keys.sign', 0):.0f} sign)")

    out += ["", f"Cold start, {c['keys']} EC P-256 keys:", "", "| path | ms | vault requests |", "|---|---:|---|",
            f"| raw: new connection + token + list ({c['raw_list']['pages']:.0f} pages) + sign | "
            f"{fmt(c['raw_list']['total_ms'], 1)} | {c['raw_list']['requests_total']:.0f} |",
            f"| raw: list + GET every key ({c['raw_list_get_all']['connections']:.0f} connections) | "
            f"{fmt(c['raw_list_get_all']['total_ms'], 1)} | {c['raw_list_get_all']['requests_total']:.0f} |"]
    for name, label in (("module_fresh_process", "module: C_Initialize → first signature, fresh process, empty cache"),
                        ("module_second_process", "module: second process, same cache directory")):
        m = c[name]
        if m["ok"]:
            out.append(f"| {label} | {fmt(m['initialize_to_first_signature_ms'], 1)} | {by_op(m)} |")
        else:
            out.append(f"| {label} | failed: {m.get('note', '')} | |")
    if "module_raw_list_ratio" in c:
        out += ["", f"Module/raw cold start: {c['module_raw_list_ratio']:.2f}× the raw listing"
                    + (f", {c['module_raw_list_get_ratio']:.2f}× raw list + GET every key."
                       if "module_raw_list_get_ratio" in c else ".")]
    p = d.get("parallel_processes")
    if p:
        out += ["", f"{p['processes']} processes at once, each C_Initialize → one signature, one empty cache "
                    "directory (vault with 2 keys):", "",
                "| signed | wall ms | median ms | max ms | vault requests | token requests |",
                "|---:|---:|---:|---:|---|---:|",
                f"| {p['processes_signed']}/{p['processes']} | {fmt(p['wall_ms'], 1)} | "
                f"{fmt(p['initialize_to_first_signature_ms'], 1)} | {fmt(p['max_ms'], 1)} | {by_op(p)} | "
                f"{p.get('requests_by_operation', {}).get('token', 0):.0f} |"]
    failed = [ch for ch in d["checks"] if not ch["ok"]]
    out += ["", f"Checks: {len(d['checks']) - len(failed)} of {len(d['checks'])} passed."]
    for ch in failed:
        out.append(f"- FAILED {ch['name']}: {ch['detail']}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
