#!/usr/bin/env bash
# The evaluation issue's device runs (one GPU): builds with CUDA, then runs the requested tasks, each into OUT/<task>
# (results.json, results.md, plots, run folders) with its logs and wall times.
#   scripts/eval-device.sh OUT mqar needle qa
# mqar:   hydra-eval mqar with configs/mqar.yaml (HydraLM and the Transformer, trained from scratch).
# needle: stage 1 on short haystacks (configs/needle-short.yaml), then hydra-eval needle with configs/needle.yaml
#         (stage 2 on 2k–4k haystacks from stage 1's weights, then the 1k–64k heatmap).
# qa:     the same training for the model with and without a retrieval block (configs/qa-curriculum.yaml: the QA
#         stream with 2, 4, 8, 16, then 32 facts, each stage from the last one's weights), then hydra-eval qa on each
#         final checkpoint at 16k tokens (configs/qa.yaml).
set -euo pipefail
OUT=${1:?usage: scripts/eval-device.sh OUT task...}
shift
BUILD=${BUILD:-build-device}
cmake -S . -B "$BUILD" -G Ninja -DHYDRA_CUDA=ON -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$BUILD" -j16 --target hydra-eval hydra-train > /dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
TRAIN="$BUILD/bin/hydra-train"
EVAL="$BUILD/bin/hydra-eval"

# step NAME LOG command...: runs one command, prints its wall time, and its log's tail if it fails.
step() {
  local name=$1 log=$2
  shift 2
  local start
  start=$(date +%s)
  "$@" > "$log" 2>&1 || { echo "$name failed:"; tail -20 "$log"; exit 1; }
  echo "== $name: $(( $(date +%s) - start )) s"
}
table() { sed -n '/^| /,$p' "$1"; }

for task in "$@"; do
  mkdir -p "$OUT/$task"
  case "$task" in
    mqar)
      step "mqar (train both models, evaluate)" "$OUT/mqar/log.txt" \
        "$EVAL" mqar --config configs/mqar.yaml --out "$OUT/mqar/eval"
      table "$OUT/mqar/log.txt" ;;
    needle)
      step "needle stage 1 (64–512 tokens)" "$OUT/needle/stage1.txt" \
        "$TRAIN" --config configs/needle-short.yaml train.run_dir="$OUT/needle/stage1" train.progress=false
      step "needle stage 2 (2k–4k tokens) and the 1k–64k heatmap" "$OUT/needle/log.txt" \
        "$EVAL" needle --config configs/needle.yaml train.init_from="$OUT/needle/stage1" --out "$OUT/needle/eval"
      table "$OUT/needle/log.txt" ;;
    qa)
      # Both variants run concurrently (one GPU); each is the same curriculum over the number of facts
      # (configs/qa-curriculum.yaml: 2, 4, 8, 16, then 32 facts on growing lengths, each stage from the last one's
      # weights), then the evaluation at 16k tokens.
      qa_variant() {
        local v=$1 extra=() prev=""
        [ "$v" = retrieval ] && extra=(model.retrieval_every=3)
        local stages=("2 2 [64,128,256] 256" "4 4 [64,128,256] 256" "8 8 [128,256,512] 512"
                      "16 8 [256,512,1024] 1024" "32 8 [512,1024,2048] 2048")
        for st in "${stages[@]}"; do
          read -r k q lens len <<< "$st"
          local init=()
          [ -n "$prev" ] && init=(train.init_from="$prev")
          step "qa $v: $k facts ($lens tokens)" "$OUT/qa/k$k-$v.txt" \
            "$TRAIN" --config configs/qa-curriculum.yaml "${extra[@]}" "${init[@]}" qa.num_facts="$k" \
            qa.num_queries="$q" "qa.train_lengths=$lens" data.seq_len="$len" train.run_dir="$OUT/qa/k$k-$v" \
            train.progress=false
          grep -E "^step" "$OUT/qa/k$k-$v.txt" | tail -1
          prev="$OUT/qa/k$k-$v"
        done
        step "qa $v: evaluation at 16k" "$OUT/qa/eval-$v.txt" \
          "$EVAL" qa --checkpoint "$prev" --config configs/qa.yaml --out "$OUT/qa/eval-$v"
      }
      qa_variant no_retrieval > "$OUT/qa/no_retrieval.out" 2>&1 &
      qa_variant retrieval > "$OUT/qa/retrieval.out" 2>&1 &
      wait
      for v in no_retrieval retrieval; do cat "$OUT/qa/$v.out"; table "$OUT/qa/eval-$v.txt"; done ;;
    *)
      echo "unknown task '$task' (known: mqar, needle, qa)"; exit 1 ;;
  esac
done
