#!/usr/bin/env python3
"""PyTorch peer of HydraLM (SPEC §1–§4) and of the dense Transformer baseline (SPEC §8.5).

A benchmark / cross-check peer, not part of the product. Parameter names are exactly SPEC §4, so
`model.load_state_dict(...)` takes the golden safetensors weights and C++ checkpoints' tensors as they are.

Two execution paths, chosen by `impl`:
  * "ref"  — pure torch, any device and dtype (float64 for parity checks). Gated delta rule by an exact chunkwise
             (UT/WY) form of the token recurrence (`dn_kernel="chunk"`, default) or the token recurrence itself
             (`dn_kernel="recurrent"`); SWA and causal attention by a masked softmax over the full N×N scores.
  * "fast" — CUDA: fla-core's chunk_gated_delta_rule (g = log α, β, scale 1; fla's Triton < 3.7.1 Hopper guard is
             bypassed as in peers.py), flex_attention (compiled) with a sliding-window causal block mask for SWA
             (i − W < j ≤ i), F.scaled_dot_product_attention(is_causal=True) for the Transformer.

Not supported (a clear error at construction): retrieval layers and MTP heads ([DEF-0.3] features).

Self-checks (CPU is enough):
  python3 bench/peers/hydra_torch.py --check-golden tests/data            # float64 + float32 parity vs golden files
  python3 bench/peers/hydra_torch.py --count                              # SPEC §4 / §8.5 parameter counts
"""
import argparse
import dataclasses
import json
import math
import os
import struct
import sys
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------------------
# Config (SPEC §1)
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class HydraConfig:
    vocab_size: int = 32000
    pad_token_id: int = 0
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    head_dim: Optional[int] = None
    mlp_mult: float = 8.0 / 3.0
    mlp_multiple_of: int = 64
    dn_short_conv_kernel: int = 4
    dn_use_gate: bool = True
    dn_chunk_size: int = 64
    dn_norm_qk: bool = True
    swa_window: int = 512
    swa_rope_base: float = 10000.0
    layer_types: Optional[List[str]] = None
    swa_every: int = 4
    rms_eps: float = 1e-5
    tie_embeddings: bool = True
    initializer_range: float = 0.02
    max_position_embeddings: int = 1048576
    retrieval_every: int = 0
    retrieval_chunk_size: int = 128
    retrieval_top_k: int = 8
    retrieval_learned_summary: bool = False
    mtp_depth: int = 0
    mtp_loss_weight: float = 0.1
    arch: str = "hydra"  # the C++ config's extra key: hydra | transformer

    def __post_init__(self):
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
            self.head_dim = self.d_model // self.n_heads
        if self.swa_every < 1:
            raise ValueError("swa_every must be >= 1 (use a value > n_layers to disable SWA)")
        if self.layer_types is None:  # SPEC §1.2, the 0.3.0 rule
            types = []
            for i in range(self.n_layers):
                p = i + 1
                if p % self.swa_every == 0:
                    types.append("swa")
                elif self.retrieval_every > 0 and p % self.retrieval_every == 0:
                    types.append("retrieval")
                else:
                    types.append("deltanet")
            self.layer_types = types
        self.layer_types = list(self.layer_types)
        if len(self.layer_types) != self.n_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries, n_layers is {self.n_layers}")
        bad = [t for t in self.layer_types if t not in ("deltanet", "swa", "retrieval")]
        if bad:
            raise ValueError(f"unknown layer type(s) {bad}")
        if self.arch not in ("hydra", "transformer"):
            raise ValueError(f"arch must be hydra or transformer, got {self.arch!r}")

    @property
    def inner(self):  # I = H·D
        return self.n_heads * self.head_dim

    @property
    def mlp_hidden(self):  # F (SPEC §1.3)
        m = self.mlp_multiple_of
        t = int(self.d_model * self.mlp_mult)
        return m * (-(-t // m))

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model keys {unknown}")
        return cls(**d)


def _scalar(s):
    s = s.strip()
    if s in ("null", "~", ""):
        return None
    if s in ("true", "false"):
        return s == "true"
    if s.startswith("[") and s.endswith("]"):
        return [_scalar(x) for x in s[1:-1].split(",") if x.strip()]
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def read_yaml(path):
    """The project's configs: PyYAML when installed, else a parser for their subset (two-level mappings of scalars
    and inline lists, '#' comments)."""
    with open(path) as f:
        text = f.read()
    try:
        import yaml
        return yaml.safe_load(text) or {}
    except ImportError:
        pass
    out, sec = {}, None
    for line in text.splitlines():
        line = line.split(" #")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        key, _, val = line.strip().partition(":")
        if not line.startswith((" ", "\t")):
            sec = key
            out[sec] = {} if not val.strip() else _scalar(val)
        else:
            out[sec][key] = _scalar(val)
    return out


def load_config(path, overrides=()):
    """(HydraConfig from the `model:` section, the whole YAML dict); overrides "section.key=value" (value as YAML)."""
    y = read_yaml(path)
    for o in overrides:
        key, eq, val = o.partition("=")
        sec, dot, name = key.partition(".")
        if not (eq and dot and sec and name):
            raise ValueError(f"override {o!r}: expected section.key=value")
        if not isinstance(y.get(sec), dict):
            y[sec] = {}
        y[sec][name] = _scalar(val)
    return HydraConfig.from_dict(dict(y.get("model") or {})), y


# ---------------------------------------------------------------------------------------------------------------
# Building blocks (SPEC §2.4–§2.10)
# ---------------------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # The statistic and the normalisation in fp32 whatever the input dtype (float64 included: the golden files
        # match this to their float32 storage precision, and less closely with a float64 statistic), then cast back.
        xs = x.float()
        y = xs * torch.rsqrt(xs.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.hidden = hidden
        self.w_fused = nn.Linear(d, 2 * hidden, bias=False)
        self.w_down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        g, a = self.w_fused(x).split(self.hidden, dim=-1)
        return self.w_down(F.silu(g) * a)


class ShortConv(nn.Module):
    """Depthwise causal conv over time (left padding K−1), SiLU after. Input/output (B, N, C)."""

    def __init__(self, channels, kernel):
        super().__init__()
        self.k = kernel
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=True)

    def forward(self, x):
        y = F.conv1d(F.pad(x.transpose(1, 2), (self.k - 1, 0)), self.conv.weight, self.conv.bias,
                     groups=self.conv.groups)
        return F.silu(y).transpose(1, 2)


def rope(x, base):
    """Half-split RoPE (SPEC §2.9) on x (B, H, N, D), absolute positions 0..N−1. inv_freq in fp32; angles, cos and sin
    in fp32, or in x's dtype when wider (float64: as a reference whose fp32 inv_freq buffer was moved to float64 by
    .double(); the golden files agree with this more closely than with fp32 tables), then cast to x's dtype."""
    N, D = x.shape[-2], x.shape[-1]
    cd = torch.promote_types(x.dtype, torch.float32)
    inv = (1.0 / (base ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D))).to(cd)
    ang = torch.arange(N, device=x.device, dtype=cd)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


# ---- gated delta rule kernels, layout (B, H, N, D); g = log α ----

def delta_rule_recurrent(q, k, v, g, beta, S0=None):
    """The token recurrence of SPEC §2.7: u = β(v − α S k), S = α S + u kᵀ, o = S q."""
    B, H, N, Dk = k.shape
    S = q.new_zeros(B, H, v.shape[-1], Dk) if S0 is None else S0
    alpha = g.exp()
    outs = []
    for t in range(N):
        kt, a, b = k[:, :, t], alpha[:, :, t, None], beta[:, :, t, None]
        u = b * (v[:, :, t] - a * (S @ kt[..., None])[..., 0])
        S = a[..., None] * S + u[..., :, None] * kt[..., None, :]
        outs.append((S @ q[:, :, t, :, None])[..., 0])
    return torch.stack(outs, dim=2), S


def delta_rule_chunk(q, k, v, g, beta, chunk, S0=None):
    """Exact chunkwise form of the same recurrence. Within a chunk with local decay λ_t = Σ_{r≤t} log α_r:
    (I + A) U = β ⊙ (V − e^λ ⊙ K S₀ᵀ), A_ts = β_t e^{λ_t−λ_s} (k_t·k_s) for s < t (unit lower-triangular solve);
    o_t = e^{λ_t} S₀ q_t + Σ_{s≤t} e^{λ_t−λ_s} (q_t·k_s) u_s;  S_C = e^{λ_C} S₀ + Σ_s e^{λ_C−λ_s} u_s k_sᵀ."""
    B, H, N, Dk = k.shape
    Dv = v.shape[-1]
    C = max(1, min(chunk, N))
    pad = (-N) % C
    if pad:  # q = k = v = 0, α = 1, β = 0: the state is unchanged
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        g, beta = F.pad(g, (0, pad)), F.pad(beta, (0, pad))
    S = q.new_zeros(B, H, Dv, Dk) if S0 is None else S0
    idx = torch.arange(C, device=q.device)
    incl = idx[:, None] >= idx[None, :]
    strict = idx[:, None] > idx[None, :]
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    outs = []
    for c0 in range(0, N + pad, C):
        qc, kc, vc = (x[:, :, c0:c0 + C] for x in (q, k, v))
        bc = beta[:, :, c0:c0 + C]
        lam = g[:, :, c0:c0 + C].cumsum(-1)
        decay = (lam[..., :, None] - lam[..., None, :]).masked_fill(~incl, float("-inf")).exp()
        A = (bc[..., :, None] * decay * (kc @ kc.transpose(-1, -2))).masked_fill(~strict, 0.0)
        el = lam.exp()[..., None]
        rhs = bc[..., None] * (vc - el * (kc @ S.transpose(-1, -2)))
        U = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
        outs.append(el * (qc @ S.transpose(-1, -2)) + (decay * (qc @ kc.transpose(-1, -2))) @ U)
        w = (lam[..., -1:] - lam).exp()[..., None]
        S = lam[..., -1].exp()[..., None, None] * S + (w * U).transpose(-1, -2) @ kc
    o = torch.cat(outs, dim=2)
    return o[:, :, :N], S


_FLA = None


def _fla_gated_delta():
    """fla-core's chunk_gated_delta_rule, with the Triton < 3.7.1 Hopper backward guard bypassed (see peers.py)."""
    global _FLA
    if _FLA is None:
        try:
            import fla.ops.common.chunk_o as chunk_o
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        except ImportError as e:
            raise RuntimeError("impl='fast' needs fla-core (pip install fla-core einops): " + str(e)) from e
        if not getattr(chunk_o, "TRITON_ABOVE_3_7_1", True):
            chunk_o.TRITON_ABOVE_3_7_1 = True
        _FLA = chunk_gated_delta_rule
    return _FLA


def _compiler_disable(fn):
    dis = getattr(getattr(torch, "compiler", None), "disable", None)
    return dis(fn) if dis else fn


@_compiler_disable
def _fla_call(q, k, v, g, beta):
    """(B, N, H, D) layout; kept out of torch.compile graphs (Triton kernels behind a custom autograd Function)."""
    return _fla_gated_delta()(q, k, v, g, beta, scale=1.0)[0]


# ---- attention ----

def attention_ref(q, k, v, window=None):
    """Masked softmax attention, (B, H, N, D); key j visible to query i iff j ≤ i and (window is None or j > i − W)."""
    N, D = q.shape[-2], q.shape[-1]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    i = torch.arange(N, device=q.device)
    mask = i[None, :] <= i[:, None]
    if window is not None:
        mask &= i[None, :] > i[:, None] - window
    p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
    return p @ v


_FLEX = {}


@_compiler_disable
def _sliding_block_mask(N, W, device):
    key = (N, W, str(device))
    if key not in _FLEX:
        from torch.nn.attention.flex_attention import create_block_mask

        def sliding(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < W)

        _FLEX[key] = create_block_mask(sliding, None, None, N, N, device=device)
    return _FLEX[key]


def _flex_fn():
    """torch.compile(flex_attention), made once and outside any torch.compile trace (set_impl("fast") makes it):
    made inside a trace, the stored object would be the uncompiled function (the unfused, slow path)."""
    if "fn" not in _FLEX:
        try:
            from torch.nn.attention.flex_attention import flex_attention
        except ImportError as e:
            raise RuntimeError("impl='fast' SWA needs torch.nn.attention.flex_attention (torch >= 2.5): " + str(e))
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    return _FLEX["fn"]


def _lowp(*xs):
    """Under autocast, the autocast dtype for kernels that do not follow autocast themselves (fla, flex)."""
    dev = xs[0].device.type
    try:
        on, dt = torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)
    except (TypeError, AttributeError):  # older torch
        on, dt = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return tuple(x.to(dt) for x in xs) if on else xs


# ---------------------------------------------------------------------------------------------------------------
# Mixers
# ---------------------------------------------------------------------------------------------------------------


class GatedDeltaNet(nn.Module):
    def __init__(self, cfg: HydraConfig):
        super().__init__()
        H, D, I, d = cfg.n_heads, cfg.head_dim, cfg.inner, cfg.d_model
        self.H, self.D, self.norm_qk, self.chunk = H, D, cfg.dn_norm_qk, cfg.dn_chunk_size
        self.impl, self.kernel = "ref", "chunk"
        self.qkv_proj = nn.Linear(d, 3 * I, bias=False)
        self.ab_proj = nn.Linear(d, 2 * H, bias=True)
        with torch.no_grad():  # SPEC §3 step 1 (overwritten by the model-level init: bias 0)
            self.ab_proj.bias[:H] = math.log(0.98 / 0.02)
            self.ab_proj.bias[H:] = 0.0
        self.short_conv = ShortConv(3 * I, cfg.dn_short_conv_kernel)
        self.gate_proj = nn.Linear(d, I, bias=False) if cfg.dn_use_gate else None
        self.o_proj = nn.Linear(I, d, bias=False)

    def forward(self, x):
        B, N, _ = x.shape
        H, D = self.H, self.D
        q, k, v = self.short_conv(self.qkv_proj(x)).view(B, N, 3, H, D).unbind(2)  # (B, N, H, D)
        if self.norm_qk:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        a, b = self.ab_proj(x).split(H, dim=-1)  # (B, N, H)
        if self.impl == "fast":
            q, k, v = _lowp(q, k, v)
            o = _fla_call(q.contiguous(), k.contiguous(), v.contiguous(), F.logsigmoid(a.float()),
                          torch.sigmoid(b.float()))
        else:
            g, beta = F.logsigmoid(a), torch.sigmoid(b)
            qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
            gh, bh = g.transpose(1, 2), beta.transpose(1, 2)
            if self.kernel == "recurrent":
                o, _ = delta_rule_recurrent(qh, kh, vh, gh, bh)
            else:
                o, _ = delta_rule_chunk(qh, kh, vh, gh, bh, self.chunk)
            o = o.transpose(1, 2)
        o = o.reshape(B, N, H * D)
        if self.gate_proj is not None:
            o = o * F.silu(self.gate_proj(x))
        return self.o_proj(o)


class Attention(nn.Module):
    """SWA (window W) or full causal attention (window None), RoPE on q, k. SPEC §2.10 / §8.5."""

    def __init__(self, cfg: HydraConfig, window):
        super().__init__()
        if cfg.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {cfg.head_dim}")
        self.H, self.D, self.window, self.base = cfg.n_heads, cfg.head_dim, window, cfg.swa_rope_base
        self.impl = "ref"
        self.qkv_proj = nn.Linear(cfg.d_model, 3 * cfg.inner, bias=False)
        self.o_proj = nn.Linear(cfg.inner, cfg.d_model, bias=False)

    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = self.qkv_proj(x).view(B, N, 3, self.H, self.D).permute(2, 0, 3, 1, 4)  # (B, H, N, D) each
        q, k = rope(q, self.base), rope(k, self.base)
        if self.impl != "fast":
            o = attention_ref(q, k, v, self.window)
        elif self.window is None or self.window >= N:  # a window covering the sequence is full causal attention
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            q, k, v = _lowp(q, k, v)
            o = _flex_fn()(q, k, v, block_mask=_sliding_block_mask(N, self.window, q.device),
                           scale=1.0 / math.sqrt(self.D))
        return self.o_proj(o.transpose(1, 2).reshape(B, N, self.H * self.D))


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, cfg, kind):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.mixer = GatedDeltaNet(cfg) if kind == "deltanet" else Attention(cfg, cfg.swa_window)
        self.norm2 = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _LMBase(nn.Module):
    def set_impl(self, impl, dn_kernel=None):
        if impl not in ("ref", "fast"):
            raise ValueError(f"impl must be 'ref' or 'fast', got {impl!r}")
        for m in self.modules():
            if isinstance(m, (GatedDeltaNet, Attention)):
                m.impl = impl
                if impl == "fast" and isinstance(m, Attention) and m.window is not None:
                    _flex_fn()
                if dn_kernel and isinstance(m, GatedDeltaNet):
                    if dn_kernel not in ("chunk", "recurrent"):
                        raise ValueError(f"dn_kernel must be chunk or recurrent, got {dn_kernel!r}")
                    m.kernel = dn_kernel
        self.impl = impl
        return self

    def num_parameters(self, exclude_embedding=False):
        n = sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())
        return n - (self.embed.weight.numel() if exclude_embedding else 0)


class HydraLM(_LMBase):
    def __init__(self, cfg: HydraConfig, impl="ref", dn_kernel="chunk"):
        super().__init__()
        if cfg.mtp_depth > 0:
            raise NotImplementedError("hydra_torch: MTP heads (mtp_depth > 0) are not implemented in this peer")
        if "retrieval" in cfg.layer_types:
            raise NotImplementedError(f"hydra_torch: retrieval layers are not implemented in this peer "
                                      f"(layer_types {cfg.layer_types}); set retrieval_every: 0")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_token_id)
        self.blocks = nn.ModuleList(Block(cfg, t) for t in cfg.layer_types)
        self.norm_f = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.init_weights()
        self.set_impl(impl, dn_kernel)

    @torch.no_grad()
    def init_weights(self):  # SPEC §3
        s0, L = self.cfg.initializer_range, self.cfg.n_layers
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, s0)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, s0)  # every row, the pad row included
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and (name.endswith(".o_proj") or name.endswith(".w_down") or name == "lm_head"):
                m.weight.normal_(0.0, s0 / math.sqrt(2 * L))
        # Conv1d keeps PyTorch's default init; RMSNorm weights are ones.

    def forward(self, ids, return_hidden=False):
        x = self.embed(ids)
        acts = []
        for blk in self.blocks:
            x = blk(x)
            if return_hidden:
                acts.append(x)
        h = self.norm_f(x)
        w = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return {"logits": F.linear(h, w), "block_outputs": acts if return_hidden else None}


class TBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.attn = Attention(cfg, None)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TransformerLM(_LMBase):
    """Dense baseline (SPEC §8.5): same config object, full causal attention in every block."""

    def __init__(self, cfg: HydraConfig, impl="ref", dn_kernel=None):
        super().__init__()
        if cfg.mtp_depth > 0:
            raise NotImplementedError("hydra_torch: MTP heads are not implemented for the Transformer baseline")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(TBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        with torch.no_grad():  # SPEC §3 rules 2, 3, 6
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    m.weight.normal_(0.0, cfg.initializer_range)
                elif isinstance(m, nn.Embedding):
                    m.weight.normal_(0.0, cfg.initializer_range)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.set_impl(impl)

    def forward(self, ids, return_hidden=False):
        x = self.embed(ids)
        acts = []
        for blk in self.blocks:
            x = blk(x)
            if return_hidden:
                acts.append(x)
        return {"logits": self.lm_head(self.norm(x)), "block_outputs": acts if return_hidden else None}


def build_model(cfg: HydraConfig, arch=None, impl="ref", dn_kernel="chunk"):
    arch = arch or cfg.arch
    if arch == "hydra":
        return HydraLM(cfg, impl, dn_kernel)
    if arch == "transformer":
        return TransformerLM(cfg, impl)
    raise ValueError(f"arch must be hydra or transformer, got {arch!r}")


def lm_loss(logits, labels):
    """Mean next-token cross-entropy of logits[:, :-1] against labels[:, 1:] (−100 ignored), in ≥ fp32."""
    lg = logits[:, :-1]
    if lg.dtype in (torch.float16, torch.bfloat16):
        lg = lg.float()
    return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def adamw_param_groups(model, weight_decay):
    """SPEC §7.3: decay = ndim ≥ 2, name not ending in .bias, not containing 'embed'; no-decay = the rest."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 and not name.endswith(".bias") and "embed" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(s, warmup, steps, min_ratio):
    """SPEC §7.6: linear warm-up from 0, then cosine to min_lr/lr; s = scheduler steps taken so far."""
    if s < warmup:
        return s / max(1, warmup)
    prog = min(1.0, (s - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * prog))


# ---------------------------------------------------------------------------------------------------------------
# safetensors (read by hand: 8-byte little-endian header length, JSON header, raw data)
# ---------------------------------------------------------------------------------------------------------------

_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = _ST_DTYPES[info["dtype"]]
        buf = bytearray(data[base + a:base + b])
        t = torch.frombuffer(buf, dtype=dt) if len(buf) else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Self-checks
# ---------------------------------------------------------------------------------------------------------------


DTYPES = (torch.float64, torch.float32)


def check_golden(folder, names=("golden_tiny", "golden_b")):
    """Loads each golden file's weights, runs forward + backward (impl='ref') in float64 and float32 with both delta
    rule kernels, and prints the errors against the stored logits, loss, block outputs and gradients."""
    ok = True
    results = {}
    for name in names:
        cfg, _ = load_config(os.path.join(folder, name + ".yaml"))
        T = read_safetensors(os.path.join(folder, name + ".safetensors"))
        ids = T["input_ids"]
        for dtype in DTYPES:
            for kernel in ("chunk", "recurrent"):
                model = HydraLM(cfg, impl="ref", dn_kernel=kernel).to(dtype)
                keys = list(model.state_dict().keys())
                missing = [k for k in keys if k not in T]
                if missing:
                    raise KeyError(f"{name}: parameters missing from the golden file: {missing}")
                extra = [k for k in T if not k.startswith(("grad.", "act.")) and k not in keys
                         and k not in ("input_ids", "logits", "loss")]
                model.load_state_dict({k: T[k].to(dtype) for k in keys}, strict=True)
                out = model(ids, return_hidden=True)
                loss = lm_loss(out["logits"], ids)
                loss.backward()
                d_logits = (out["logits"].double() - T["logits"].double()).abs().max().item()
                d_loss = abs(loss.item() - T["loss"].item())
                d_act = max((a.double() - T[f"act.blocks.{i}"].double()).abs().max().item()
                            for i, a in enumerate(out["block_outputs"]))
                g_rel = {}
                for n, p in model.named_parameters():
                    ref = T["grad." + n].double()
                    g_rel[n] = ((p.grad.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item()
                worst = max(g_rel, key=g_rel.get)
                # float64: the golden tensors are stored in float32, so ~1e-7 relative is the floor; float32: golden README
                tol = (1e-6, 1e-6, 1e-6) if dtype == torch.float64 else (1e-4, 1e-5, 1e-3)
                passed = d_logits <= tol[0] and d_loss <= tol[1] and g_rel[worst] <= tol[2]
                ok &= passed
                tag = f"{name} {str(dtype).replace('torch.', '')} {kernel}"
                results[tag] = {"max_abs_dlogits": d_logits, "abs_dloss": d_loss, "max_abs_dact": d_act,
                                "max_grad_rel": g_rel[worst], "worst_grad": worst, "pass": passed}
                print(f"{tag:32s} params {model.num_parameters():7d} ({len(keys)} tensors)  "
                      f"max|dlogits| {d_logits:.2e}  |dloss| {d_loss:.2e}  max|dact| {d_act:.2e}  "
                      f"max grad rel err {g_rel[worst]:.2e} ({worst})  {'PASS' if passed else 'FAIL'}"
                      + (f"  [unused golden tensors: {extra}]" if extra else ""), flush=True)
    return ok, results


def check_counts():
    cfg = HydraConfig(vocab_size=257, d_model=64, n_layers=4, n_heads=4, swa_every=2)
    h, t = HydraLM(cfg), TransformerLM(cfg)
    n_h, n_t = h.num_parameters(), t.num_parameters()
    print(f"SPEC §4 checked instance: HydraLM {n_h:,} parameters in {len(h.state_dict())} tensors "
          f"(expected 241,168 in 36), Transformer {n_t:,} (expected 230,016), ratio {n_t / n_h:.3f}")
    return n_h == 241168 and len(h.state_dict()) == 36 and n_t == 230016


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-golden", metavar="DIR", help="parity against DIR/golden_{tiny,b}.{safetensors,yaml}")
    ap.add_argument("--count", action="store_true", help="check the SPEC §4 / §8.5 parameter counts")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ok = True
    if args.count or args.check_golden:
        ok &= check_counts()
    if args.check_golden:
        ok &= check_golden(args.check_golden)[0]
    if not (args.count or args.check_golden):
        ap.print_help()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
