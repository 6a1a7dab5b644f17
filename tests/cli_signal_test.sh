#!/usr/bin/env bash
# hydra-train on SIGINT or SIGTERM: finishes the current step, writes a checkpoint, exits 0 with a message; a resume
# then continues from that step. Usage: cli_signal_test.sh HYDRA_TRAIN RUN_DIR SIGNAL
set -u
bin=$1 dir=$2 sig=$3
rm -rf "$dir" "$dir.log"
mkdir -p "$(dirname "$dir")"
args=(train.steps=100000 train.log_every=1 model.n_layers=2 data.seq_len=32 train.batch_size=4 eval.batches=1
      checkpoint.every=0 train.run_dir="$dir" train.progress=false)
"$bin" "${args[@]}" > "$dir.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "^step" "$dir.log" 2>/dev/null && break; sleep 0.1; done  # a step has run
kill "-$sig" "$pid"
wait "$pid"
rc=$?
tail -n 4 "$dir.log"
[ "$rc" -eq 0 ] || { echo "FAIL: exit status $rc after SIG$sig"; exit 1; }
grep -q "signal received" "$dir.log" || { echo "FAIL: no signal message"; exit 1; }
step=$(sed -n 's/^interrupted after step \([0-9]*\):.*/\1/p' "$dir.log")
[ -n "$step" ] && [ -d "$dir/checkpoints/step-$step" ] || { echo "FAIL: no checkpoint of the interrupted step"; exit 1; }
"$bin" "${args[@]}" train.resume=true train.stop_after=1 > "$dir.resume.log" 2>&1 ||
  { cat "$dir.resume.log"; echo "FAIL: resume"; exit 1; }
grep -q "^step *$((step + 1))/" "$dir.resume.log" || { echo "FAIL: resume did not continue at step $((step + 1))"; exit 1; }
echo "PASS: SIG$sig after step $step, checkpoint written, resumed at step $((step + 1))"
