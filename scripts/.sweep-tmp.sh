#!/usr/bin/env bash
# usage: sweep.sh OUT ; runs hydra-eval mqar on the CPU config with overrides, prints accuracy per line
E=build-device/bin/hydra-eval
i=0
while read -r line; do
  [ -z "$line" ] && continue
  i=$((i+1))
  acc=$($E mqar --config configs/mqar-cpu.yaml train.precision=fp32 $line --out $1/s$i 2>&1 | grep -E "^accuracy" )
  echo "$line => $acc"
done <<'LIST'
optim.name=muon
optim.name=muon optim.muon_lr=2e-2
optim.name=muon train.steps=1000
train.steps=4000
optim.lr=1e-2 optim.warmup_steps=100
train.batch_size=128
LIST
