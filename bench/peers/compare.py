#!/usr/bin/env python3
"""Joins `hydra-bench kernels --json OURS` with `peers.py --json PEERS` (same run, same device) into one table.

Usage: python3 bench/peers/compare.py OURS.json PEERS.json
Ratio = our median ms / the peer's median ms (bf16 rows); the targets are issue 8's. TFLOP/s, GB/s and the roofline
floor are ours (FLOP and byte formulas printed by hydra-bench kernels).
"""
import json
import sys

TARGETS = {("gated_delta", "fwd"): 0.75, ("gated_delta", "fwd+bwd"): 0.67, ("window_attn", "fwd+bwd"): 0.85,
           ("chunk_attn", "fwd+bwd"): 0.70}


def main():
    ours, peers = (json.load(open(p)) for p in sys.argv[1:3])
    pk = {(r["kernel"], r["shape"], r["pass"]): r for r in peers["rows"] if "ms" in r}
    print(f"\n## Ours vs PyTorch peers, same run: {ours['device']} (D2D copy {ours['copy_gbs']:.0f} GB/s, "
          f"bf16 peak {ours['peak_bf16_tflops']:.0f} TFLOP/s); peers: torch {peers['info'].get('torch')}, "
          f"triton {peers['info'].get('triton')}, fla {peers['info'].get('fla')}\n")
    print("| kernel | B×T×H×D | pass | ours ms | peer ms | ratio | target | met | our TFLOP/s | our GB/s | floor ms | "
          "× floor | peer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in ours["rows"]:
        if r["dtype"] != "bf16" or r["pass"] == "step":
            continue
        key = (r["kernel"], r["shape"], r["pass"])
        p = pk.get(key)
        tgt = TARGETS.get((r["kernel"], r["pass"]))
        ratio = r["ms"] / p["ms"] if p else None
        met = "" if (ratio is None or tgt is None) else ("yes" if ratio <= tgt else "no")
        print(f"| {r['kernel']} | {r['shape'].replace('x', '×')} | {r['pass']} | {r['ms']:.3f} | "
              f"{p['ms']:.3f} | {ratio:.2f}× | " if p else
              f"| {r['kernel']} | {r['shape'].replace('x', '×')} | {r['pass']} | {r['ms']:.3f} | – | – | ", end="")
        print(f"{'≤ %.2f×' % tgt if tgt else ''} | {met} | {r['gflop'] / r['ms']:.1f} | {r['mb'] / r['ms']:.0f} | "
              f"{r['floor_ms']:.3f} | {r['ms'] / r['floor_ms']:.1f}× | {p['peer'] if p else ''} |")
    steps = [r for r in ours["rows"] if r["pass"] == "step"]
    if steps:  # the decode step has no peer: its reference is a D2D copy of the same bytes, same run
        print("\n| decode step | B×T×H×D | step ms | D2D copy ms (same bytes) | % of copy | target | met |")
        print("|---|---|---|---|---|---|---|")
        for r in steps:
            frac = r["copy_ms"] / r["ms"]
            print(f"| {r['kernel']} | {r['shape'].replace('x', '×')} | {r['ms']:.4f} | {r['copy_ms']:.4f} | "
                  f"{100 * frac:.0f}% | ≥ 70% | {'yes' if frac >= 0.7 else 'no'} |")
    for name, c in peers.get("checks", {}).items():
        print(f"\npeer check {name}: {json.dumps(c)}")
    for r in peers["rows"]:
        if "error" in r:
            print(f"\npeer {r['kernel']} failed: {r['error']}")


if __name__ == "__main__":
    main()
