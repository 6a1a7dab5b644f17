#!/usr/bin/env python3
"""Train the PyTorch peer (hydra_torch.py) on the MQAR stream (SPEC §8.1) and report held-out accuracy.

A cross-check of the C++ hydra-eval / hydra-train MQAR runs (not part of the product):
  python3 bench/peers/mqar_torch.py --config configs/mqar-cpu.yaml --arch transformer [--lr 1e-3] [--steps N]
      [--set model.n_heads=4 ...]
      [--threads 1] [--device cpu|cuda] [--impl ref|fast] [--init-from model.safetensors]
      [--stream torch|cxx] [--log-every N] [--json FILE]

From the config: model (SPEC §1 fields; `arch` or --arch picks hydra | transformer (SPEC §8.5)), data.seq_len,
mqar.{num_kv_pairs, num_queries, eval_batches, eval_batch_size}, optim.{lr, min_lr, warmup_steps, weight_decay,
beta1, beta2, eps, grad_clip}, train.{steps, batch_size, seed}, eval.{every, batches, seed}; missing keys take the
C++ trainer's defaults. Training as hydra-train does on a task stream: a fresh batch per step, mean cross-entropy
over the labelled positions (the logits at a query's key position predict its value), AdamW with the SPEC §7.3
groups, the SPEC §7.6 schedule (linear warm-up from 0, cosine to min_lr), gradient clipping. Every eval.every steps
(and at step 1 and the last step) the accuracy on a fixed held-out set of eval.batches × train.batch_size sequences;
at the end the accuracy on mqar.eval_batches × mqar.eval_batch_size fresh sequences (another seed).

Exact cross-check of a C++ run: `--stream cxx` draws the C++ trainer's MQAR batches bit for bit (its Philox stream,
training seed train.seed ^ 0x9E3779B97F4A7C15, validation seed train.seed + 9999, final set seed eval.seed), and
`--init-from RUN/checkpoints/step-1/model.safetensors` starts from the C++ run's initial weights (the first step has
lr 0, so with weight decay 0 the step-1 checkpoint holds the initial weights; get it with hydra-train ...
train.stop_after=1). The two runs then agree step for step until float rounding makes them drift apart.
On the CPU use --threads 1: denormals are flushed only on the calling thread (they slow the delta rule down).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hydra_torch as ht  # noqa: E402


def mqar_batch(B, V, P, Q, N, gen):
    """SPEC §8.1: P distinct keys in [0, V/2), values uniform in [V/2, V), Q queries with replacement, contiguous
    pairs, padding 0; label (−100 elsewhere) at each query's key position = its value."""
    K = V // 2
    if P > K or N < 2 * (P + Q):
        raise ValueError(f"mqar: need P <= V/2 and seq_len >= 2(P+Q); got V {V}, P {P}, Q {Q}, seq_len {N}")
    keys = torch.rand(B, K, generator=gen).argsort(dim=1)[:, :P]  # prefix of a uniform permutation
    vals = K + torch.randint(0, V - K, (B, P), generator=gen)
    qi = torch.randint(0, P, (B, Q), generator=gen)
    ids = torch.zeros(B, N, dtype=torch.long)
    labels = torch.full((B, N), -100, dtype=torch.long)
    ids[:, 0:2 * P:2], ids[:, 1:2 * P:2] = keys, vals
    qk, qv = keys.gather(1, qi), vals.gather(1, qi)
    ids[:, 2 * P:2 * (P + Q):2], ids[:, 2 * P + 1:2 * (P + Q):2] = qk, qv
    labels[:, 2 * P:2 * (P + Q):2] = qv
    return ids, labels


class CxxStream:
    """The C++ trainer's MQAR stream, bit for bit (tensor/random.h, tensor/philox.h, eval/mqar.cpp): Philox4x32-10
    words, word i = word i % 4 of philox(counter = offset + i / 4, key = seed); a float64 uniform from two words;
    per row 2P + Q uniforms: P for a partial Fisher–Yates shuffle of the key space, P values, Q query indices."""
    M32 = 0xFFFFFFFF

    def __init__(self, seed):
        import numpy as np
        self.np, self.seed, self.offset = np, seed & 0xFFFFFFFFFFFFFFFF, 0

    def words(self, n):
        np = self.np
        nb = (n + 3) // 4
        blk = np.arange(self.offset, self.offset + nb, dtype=np.uint64)
        self.offset += nb
        M = np.uint64(self.M32)
        c0, c1 = blk & M, blk >> np.uint64(32)
        c2, c3 = np.zeros_like(blk), np.zeros_like(blk)
        k0, k1 = np.uint64(self.seed & self.M32), np.uint64(self.seed >> 32)
        for _ in range(10):
            pa, pb = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
            c0, c1, c2, c3 = (pb >> np.uint64(32)) ^ c1 ^ k0, pb & M, (pa >> np.uint64(32)) ^ c3 ^ k1, pa & M
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & M, (k1 + np.uint64(0xBB67AE85)) & M
        return np.stack([c0, c1, c2, c3], axis=1).reshape(-1)[:n]

    def rand64(self, n):
        w = self.words(2 * n).astype(self.np.float64)
        a, b = self.np.floor(w[0::2] / 32), self.np.floor(w[1::2] / 64)
        return (a * 67108864.0 + b) / 9007199254740992.0

    def batch(self, B, V, P, Q, N):
        K, Vs = V // 2, V - V // 2
        u = self.rand64(B * (2 * P + Q)).reshape(B, 2 * P + Q)
        pick = lambda x, n: min(int(x * n), n - 1)  # noqa: E731
        ids = torch.zeros(B, N, dtype=torch.long)
        labels = torch.full((B, N), -100, dtype=torch.long)
        for b in range(B):
            perm = list(range(K))
            for i in range(P):
                j = i + pick(u[b, i], K - i)
                perm[i], perm[j] = perm[j], perm[i]
            vals = [K + pick(u[b, P + i], Vs) for i in range(P)]
            for i in range(P):
                ids[b, 2 * i], ids[b, 2 * i + 1] = perm[i], vals[i]
            for j in range(Q):
                k = pick(u[b, 2 * P + j], P)
                ids[b, 2 * P + 2 * j], ids[b, 2 * P + 2 * j + 1] = perm[k], vals[k]
                labels[b, 2 * P + 2 * j] = vals[k]
        return ids, labels


def task_loss(logits, labels):
    """Mean CE over labelled positions 0..N−2 (label at t = target of the logits at t) and #correct, #labelled."""
    lg, lb = logits[:, :-1].float(), labels[:, :-1]
    mask = lb != -100
    loss = F.cross_entropy(lg[mask], lb[mask])
    return loss, (lg[mask].argmax(-1) == lb[mask]).sum().item(), int(mask.sum().item())


@torch.no_grad()
def evaluate(model, batches, device):
    model.eval()
    correct = count = 0
    loss_sum = 0.0
    for ids, labels in batches:
        logits = model(ids.to(device))["logits"]
        loss, c, n = task_loss(logits, labels.to(device))
        correct, count, loss_sum = correct + c, count + n, loss_sum + loss.item() * n
    model.train()
    return correct / max(1, count), loss_sum / max(1, count), count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--arch", choices=["hydra", "transformer"], default=None, help="default: model.arch or hydra")
    ap.add_argument("--lr", type=float, default=None, help="override optim.lr")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps (the schedule's length)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--impl", choices=["ref", "fast"], default="ref")
    ap.add_argument("--init-from", default=None, metavar="FILE",
                    help="start from these weights (a safetensors file with SPEC §4 names, e.g. a C++ checkpoint's "
                         "model.safetensors) instead of the SPEC §3 init")
    ap.add_argument("--stream", choices=["torch", "cxx"], default="torch",
                    help="torch: torch generators; cxx: the C++ hydra-train / hydra-eval MQAR batches bit for bit "
                         "(Philox; with --init-from the C++ run's initial weights, the same run step for step)")
    ap.add_argument("--log-every", type=int, default=0, help="also print the training loss every N steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config key, e.g. --set model.n_heads=4 (repeatable)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # The delta rule's decays underflow to denormals as training goes on: several times slower on the CPU. Flushing
    # them is per thread (the calling one), so prefer --threads 1 on the CPU.
    torch.set_flush_denormal(True)

    cfg, y = ht.load_config(args.config, args.set)
    sec = lambda name: dict(y.get(name) or {})  # noqa: E731
    data, mq, opt, tr, ev = sec("data"), sec("mqar"), sec("optim"), sec("train"), sec("eval")
    V, N = cfg.vocab_size, int(data.get("seq_len", 256))
    P, Q = int(mq.get("num_kv_pairs", 64)), int(mq.get("num_queries", 64))
    lr = args.lr if args.lr is not None else float(opt.get("lr", 3e-4))
    min_lr = float(opt.get("min_lr", 3e-5))
    warmup = int(opt.get("warmup_steps", 500))
    steps = args.steps if args.steps is not None else int(tr.get("steps", 10000))
    B = args.batch_size or int(tr.get("batch_size", 8))
    seed = args.seed if args.seed is not None else int(tr.get("seed", 0))
    clip = float(opt.get("grad_clip", 1.0))
    every = int(ev.get("every", 1000))
    if opt.get("name", "adamw") != "adamw":
        print(f"note: optim.name {opt.get('name')} ignored, this peer trains with AdamW", file=sys.stderr)

    torch.manual_seed(seed)
    arch = args.arch or cfg.arch
    model = ht.build_model(cfg, arch=arch, impl=args.impl)
    if args.init_from:
        model.load_state_dict(ht.read_safetensors(args.init_from), strict=True)
    model = model.to(args.device)
    optim = torch.optim.AdamW(ht.adamw_param_groups(model, float(opt.get("weight_decay", 0.1))), lr=lr,
                              betas=(float(opt.get("beta1", 0.9)), float(opt.get("beta2", 0.95))),
                              eps=float(opt.get("eps", 1e-8)))
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: ht.lr_factor(s, warmup, steps, min_lr / lr))
    if args.stream == "cxx":  # hydra-train's streams: training seed ^ golden-ratio constant, validation seed + 9999
        tr_stream, val_stream = CxxStream(seed ^ 0x9E3779B97F4A7C15), CxxStream(seed + 9999)
        next_batch = lambda b, st=tr_stream: st.batch(b, V, P, Q, N)  # noqa: E731
        val = [val_stream.batch(B, V, P, Q, N) for _ in range(int(ev.get("batches", 8)))]
    else:  # not seeded with `seed` itself: the init's global generator would then draw the same bits (correlated)
        gen = torch.Generator().manual_seed(seed ^ 0x9E3779B97F4A7C15)
        next_batch = lambda b: mqar_batch(b, V, P, Q, N, gen)  # noqa: E731
        g_val = torch.Generator().manual_seed(1_000_003 + seed)
        val = [mqar_batch(B, V, P, Q, N, g_val) for _ in range(int(ev.get("batches", 8)))]
    print(f"mqar peer: arch {arch} ({cfg.layer_types if arch == 'hydra' else f'{cfg.n_layers} x attention'}), "
          f"{model.num_parameters():,} params, V {V} P {P} Q {Q} N {N}, batch {B}, steps {steps}, lr {lr} "
          f"(min {min_lr}, warm-up {warmup}), wd {opt.get('weight_decay', 0.1)}, clip {clip}, seed {seed}, "
          f"threads {torch.get_num_threads()}", flush=True)

    history = []
    t0 = time.time()
    for step in range(1, steps + 1):
        ids, labels = next_batch(B)
        loss, _, _ = task_loss(model(ids.to(args.device))["logits"], labels.to(args.device))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        cur_lr = optim.param_groups[0]["lr"]
        optim.step()
        sched.step()
        if args.log_every and step % args.log_every == 0 and step % every:
            print(f"step {step:5d}  train loss {loss.item():.6f}  lr {cur_lr:.3e}", flush=True)
        if step == 1 or step % every == 0 or step == steps:
            acc, vloss, _ = evaluate(model, val, args.device)
            history.append({"step": step, "train_loss": loss.item(), "eval_accuracy": acc, "eval_loss": vloss,
                            "lr": cur_lr, "time_s": time.time() - t0})
            print(f"step {step:5d}  train loss {loss.item():.4f}  held-out acc {acc:.4f}  loss {vloss:.4f}  "
                  f"lr {cur_lr:.2e}  {time.time() - t0:.1f} s", flush=True)
    train_s = time.time() - t0
    eb, nb = int(mq.get("eval_batch_size", 16)), int(mq.get("eval_batches", 32))
    if args.stream == "cxx":  # hydra-eval's final evaluation set (Generator(eval.seed))
        st = CxxStream(int(ev.get("seed", 0)))
        test = [st.batch(eb, V, P, Q, N) for _ in range(nb)]
    else:
        g_test = torch.Generator().manual_seed(2 ** 32 + int(ev.get("seed", 0)))  # not the init's stream
        test = [mqar_batch(eb, V, P, Q, N, g_test) for _ in range(nb)]
    acc, tloss, n = evaluate(model, test, args.device)
    print(f"final: accuracy {acc:.4f} loss {tloss:.4f} over {n} answers; training {train_s:.1f} s "
          f"({1000 * train_s / steps:.1f} ms/step)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "config": args.config, "arch": arch, "params": model.num_parameters(),
                       "lr": lr, "steps": steps, "train_s": train_s, "history": history,
                       "final": {"accuracy": acc, "loss": tloss, "answers": n}}, f, indent=1)


if __name__ == "__main__":
    main()
