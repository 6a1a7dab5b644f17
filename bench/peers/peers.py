#!/usr/bin/env python3
"""PyTorch peers of the HydraLM mixer kernels, timed on the GPU (issue 8's benchmark; not part of the product).

Peers (bf16 q, k, v; fp32 gates), the shapes of `hydra-bench kernels --peer-shapes`:
  * gated delta rule: flash-linear-attention's chunk_gated_delta_rule (fla-core), scale 1 (HydraLM applies no
    1/sqrt(K)), g = log(alpha). Triton < 3.7.1 on Hopper makes fla refuse its backward (fla issue #640); the guard is
    bypassed here and the bypassed backward is checked against a float64 recurrence on a small shape in the same run
    (its rel. RMS errors are printed and stored; the timing rows are kept either way).
  * windowed attention W: torch.nn.attention.flex_attention (compiled) with a causal sliding-window block mask.
  * top-k chunk attention (chunk N, top k): the routing in PyTorch ops (scores q0·r_j over complete earlier chunks,
    topk, a [B, H, T, n_chunks] selection table) plus flex_attention with a mask_mod reading that table
    (own chunk causal, or the key's chunk selected); routing and block-mask construction are inside the timed region.

Timing: triton.testing.do_bench (CUDA events, L2 flushed before each call), median; fwd = forward only (no autograd
graph), fwd+bwd = forward then backward of a random upstream gradient.

Usage: python3 bench/peers/peers.py [--quick] [--json FILE]
"""
import argparse
import json
import math
import sys
import time

import torch
import triton


def bench(fn, quick):
    return triton.testing.do_bench(fn, warmup=10 if quick else 50, rep=50 if quick else 300, return_mode="median")


def rel_rms(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-300)).item()


# ---- gated delta rule ----

def gated_delta_ref64(q, k, v, alpha, beta):
    """float64 recurrence of HydraLM's gated delta rule (SPEC §2.8): u = beta (v - alpha S k), S = alpha S + u k^T,
    o = S q. Layout [B, T, H, D]."""
    q, k, v, alpha, beta = (x.double() for x in (q, k, v, alpha, beta))
    B, T, H, K = q.shape
    S = torch.zeros(B, H, v.shape[-1], K, dtype=torch.float64, device=q.device)
    out = []
    for t in range(T):
        a, bt = alpha[:, t, :, None, None], beta[:, t, :, None]
        kt, vt = k[:, t], v[:, t]
        u = bt * (vt - alpha[:, t, :, None] * torch.einsum("bhvk,bhk->bhv", S, kt))
        S = a * S + u[..., :, None] * kt[..., None, :]
        out.append(torch.einsum("bhvk,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1)


def gd_inputs(B, T, H, D, seed, grad=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(B, T, H, D, device="cuda", generator=g), dim=-1).bfloat16()
    k = torch.nn.functional.normalize(torch.randn(B, T, H, D, device="cuda", generator=g), dim=-1).bfloat16()
    v = torch.randn(B, T, H, D, device="cuda", generator=g).bfloat16()
    alpha = torch.rand(B, T, H, device="cuda", generator=g) * 0.5 + 0.5
    beta = torch.rand(B, T, H, device="cuda", generator=g)
    do = torch.randn(B, T, H, D, device="cuda", generator=g).bfloat16()
    xs = [q, k, v, alpha, beta]
    if grad:
        xs = [x.requires_grad_() for x in xs]
    return xs, do


def run_gated_delta(rows, checks, quick):
    import fla.ops.common.chunk_o as chunk_o
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    bypassed = False
    if not getattr(chunk_o, "TRITON_ABOVE_3_7_1", True):
        chunk_o.TRITON_ABOVE_3_7_1 = True  # see the module docstring: checked below against float64
        bypassed = True

    def call(q, k, v, alpha, beta):
        return chunk_gated_delta_rule(q, k, v, alpha.log(), beta, scale=1.0)[0]

    # Correctness of the peer (forward and the possibly bypassed backward) on a small shape, fresh random inputs.
    (q, k, v, alpha, beta), do = gd_inputs(2, 200, 3, 64, 11, grad=True)
    o = call(q, k, v, alpha, beta)
    o.backward(do)
    got = [o] + [x.grad for x in (q, k, v, alpha, beta)]
    xs64 = [x.detach().double().requires_grad_() for x in (q, k, v, alpha, beta)]
    o64 = gated_delta_ref64(*xs64)
    o64.backward(do.double())
    ref = [o64] + [x.grad for x in xs64]
    names = ["o", "dq", "dk", "dv", "dalpha", "dbeta"]
    errs = {n: rel_rms(a, b) for n, a, b in zip(names, got, ref)}
    checks["fla_gated_delta_vs_float64"] = {"shape": "2x200x3x64", "guard_bypassed": bypassed, "rel_rms": errs}
    print(f"fla chunk_gated_delta_rule vs float64 recurrence (2x200x3x64, guard bypassed: {bypassed}): "
          + ", ".join(f"{n} {e:.2e}" for n, e in errs.items()), flush=True)

    shapes = [(2, 1024, 12, 64)] if quick else [(8, 4096, 12, 64), (1, 32768, 12, 64), (4, 4096, 16, 128)]
    for B, T, H, D in shapes:
        (q, k, v, alpha, beta), do = gd_inputs(B, T, H, D, 1)
        with torch.no_grad():
            ms = bench(lambda: call(q, k, v, alpha, beta), quick)
        rows.append({"kernel": "gated_delta", "shape": f"{B}x{T}x{H}x{D}", "pass": "fwd", "ms": ms,
                     "peer": "fla.chunk_gated_delta_rule"})
        xs = [x.requires_grad_() for x in (q, k, v, alpha, beta)]

        def fb():
            for x in xs:
                x.grad = None
            call(*xs).backward(do)

        ms = bench(fb, quick)
        rows.append({"kernel": "gated_delta", "shape": f"{B}x{T}x{H}x{D}", "pass": "fwd+bwd", "ms": ms,
                     "peer": "fla.chunk_gated_delta_rule"})
        print(rows[-2], rows[-1], flush=True)


# ---- windowed attention ----

def run_window(rows, quick, W=512):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    flex = torch.compile(flex_attention, dynamic=False)

    def sliding(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < W)

    shapes = [(2, 1024, 12, 64)] if quick else [(8, 4096, 12, 64), (1, 32768, 12, 64)]
    for B, T, H, D in shapes:
        g = torch.Generator(device="cuda").manual_seed(2)
        q, k, v, do = (torch.randn(B, H, T, D, device="cuda", generator=g).bfloat16() for _ in range(4))
        bm = create_block_mask(sliding, None, None, T, T, device="cuda")
        scale = 1.0 / math.sqrt(D)
        with torch.no_grad():
            ms = bench(lambda: flex(q, k, v, block_mask=bm, scale=scale), quick)
        rows.append({"kernel": "window_attn", "shape": f"{B}x{T}x{H}x{D}", "pass": "fwd", "ms": ms,
                     "peer": "flex_attention (sliding-window block mask)"})
        xs = [x.requires_grad_() for x in (q, k, v)]

        def fb():
            for x in xs:
                x.grad = None
            flex(*xs, block_mask=bm, scale=scale).backward(do)

        ms = bench(fb, quick)
        rows.append({"kernel": "window_attn", "shape": f"{B}x{T}x{H}x{D}", "pass": "fwd+bwd", "ms": ms,
                     "peer": "flex_attention (sliding-window block mask)"})
        print(rows[-2], rows[-1], flush=True)


# ---- top-k chunk attention ----

def run_chunk(rows, quick, N=128, topk=8):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    flex = torch.compile(flex_attention, dynamic=False)

    def route(q0, summ, T):
        """idx-equivalent selection table sel [B, H, T, n_c] (bool): chunk j selected by query t (SPEC §2.11)."""
        n_c = summ.shape[1]
        s = torch.einsum("bthk,bjhk->bhtj", q0.float(), summ.float())
        t = torch.arange(T, device=q0.device)
        cand = torch.arange(n_c, device=q0.device)[None, :] < (t // N)[:, None]  # complete earlier chunks
        s = s.masked_fill(~cand, float("-inf"))
        kk = min(topk, n_c)
        val, idx = s.topk(kk, dim=-1)
        sel = torch.zeros_like(s, dtype=torch.bool)
        sel.scatter_(-1, idx, val > float("-inf"))
        return sel

    shapes = [(1, 2048, 12, 64)] if quick else [(1, 16384, 12, 64), (1, 65536, 12, 64)]
    for B, T, H, D in shapes:
        g = torch.Generator(device="cuda").manual_seed(3)
        q, k, v, do = (torch.randn(B, T, H, D, device="cuda", generator=g).bfloat16() for _ in range(4))
        summ = torch.randn(B, T // N, H, D, device="cuda", generator=g).bfloat16()
        qh, kh, vh, doh = (x.transpose(1, 2).contiguous() for x in (q, k, v, do))
        scale = 1.0 / math.sqrt(D)

        # The selection lives in one buffer that the mask_mod reads, so the compiled block-mask builder is traced
        # once per shape (a fresh closure per call would recompile every call).
        sel_buf = torch.zeros(B, H, T, T // N, dtype=torch.bool, device="cuda")

        def mask(b, h, q_idx, kv_idx):
            own = (q_idx // N == kv_idx // N) & (kv_idx <= q_idx)
            return own | sel_buf[b, h, q_idx, kv_idx // N]

        def attend(qh, kh, vh):
            sel_buf.copy_(route(q, summ, T))
            bm = create_block_mask(mask, B, H, T, T, device="cuda", _compile=True)
            return flex(qh, kh, vh, block_mask=bm, scale=scale)

        with torch.no_grad():
            ms = bench(lambda: attend(qh, kh, vh), quick)
        rows.append({"kernel": "chunk_attn", "shape": f"{B}x{T}x{H}x{D}", "pass": "fwd", "ms": ms,
                     "peer": "PyTorch routing + flex_attention (mask_mod on the selection)"})
        xs = [x.requires_grad_() for x in (qh, kh, vh)]

        def fb():
            for x in xs:
                x.grad = None
            attend(*xs).backward(doh)

        ms = bench(fb, quick)
        rows.append({"kernel": "chunk_attn", "shape": f"{B}x{T}x{H}x{D}", "pass": "fwd+bwd", "ms": ms,
                     "peer": "PyTorch routing + flex_attention (mask_mod on the selection)"})
        print(rows[-2], rows[-1], flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default="gated_delta,window_attn,chunk_attn")
    args = ap.parse_args()
    only = set(args.only.split(","))
    rows, checks = [], {}
    info = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__}
    try:
        import fla
        info["fla"] = getattr(fla, "__version__", "?")
    except Exception as e:  # noqa: BLE001 - reported, the other peers still run
        info["fla"] = f"unavailable: {e}"
    print(info, flush=True)
    t0 = time.time()
    for name, fn in (("gated_delta", lambda: run_gated_delta(rows, checks, args.quick)),
                     ("window_attn", lambda: run_window(rows, args.quick)),
                     ("chunk_attn", lambda: run_chunk(rows, args.quick))):
        if name not in only:
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one failing peer must not hide the others
            print(f"{name} peer failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr, flush=True)
            rows.append({"kernel": name, "error": f"{type(e).__name__}: {str(e)[:300]}"})
    info["seconds"] = time.time() - t0
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "checks": checks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
