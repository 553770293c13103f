#!/usr/bin/env bash
# How a search should answer a repeat (TPE drawing an architecture its study has tried): the same
# small_mcu/distill smoke study (2,000 training images, 2-epoch trials) under the three answers
# tfkd.search has had, each from its own commit in a git worktree:
#   value   0216bfa  the earlier trial's value, as Optuna's FAQ suggests
#   fail    15b2b9e  FAIL, which TPE ignores
#   pruned  68a43cf  pruned, ranked with the bad draws (what tfkd.search does)
# Accuracies after 2 epochs on 2,000 images mean nothing; the draws are the measurement.
#
#   bench/search_repeats.sh [trials] [out]      # defaults: 30 runs/bench_search_repeats
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-30}
OUT=$(realpath -m "${2:-runs/bench_search_repeats}")
ROOT=$(pwd)
PY=$ROOT/.venv/bin/python
DATA=$(realpath ../shared/data/cifar10-jpeg)
mkdir -p "$OUT"
# The three checkouts are only needed while their searches run.
trap 'for src in "$OUT"/src_*; do [[ -d "$src" ]] && git worktree remove --force "$src"; done' EXIT
for variant in value:0216bfa fail:15b2b9e pruned:68a43cf; do
  name=${variant%%:*} commit=${variant##*:}
  [[ -d "$OUT/src_$name" ]] || git worktree add --detach "$OUT/src_$name" "$commit"
  # The first variant trains the smoke teacher and measures the costs; the others copy them,
  # so all three search the same landscape.
  if [[ "$name" != value && ! -d "$OUT/$name/teacher_views" ]]; then
    mkdir -p "$OUT/$name/search"
    cp -r "$OUT/value/teacher" "$OUT/value/teacher_views" "$OUT/$name/"
    cp -r "$OUT/value/search/costs" "$OUT/$name/search/"
  fi
  start=$(date +%s)
  (cd "$OUT/src_$name" && "$PY" -m tfkd.search --config=configs/cifar10_search.py \
    --workdir="$OUT/$name" --config.data.path="$DATA" --config.data.train_limit=2000 \
    --config.teacher.epochs=8 --config.distill.cache_epochs=1 --config.search.trials="$TRIALS" \
    --config.search.epochs=2 --config.search.final_epochs=1 --config.search.latency_spread_s=5 \
    --config.train.precision=float32 --config.search.devices='("small_mcu",)' \
    --config.search.modes='("distill",)' --config.search.max_repeated=300) > "$OUT/$name.log" 2>&1
  echo "$name: $(( $(date +%s) - start )) s" >> "$OUT/times.txt"
done
"$PY" - "$OUT" <<'PY' | tee "$OUT/search_repeats.md"
import collections, sys, optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
print("| answer to a repeat | candidates | trained | rejected draws | repeats "
      "| most repeats of one trial |")
print("|---|---:|---:|---:|---:|---:|")
for name in ("value", "fail", "pruned"):
  trials = optuna.load_study(study_name="small_mcu_distill",
                             storage=f"sqlite:///{sys.argv[1]}/{name}/search/studies.db").trials
  status = collections.Counter(t.user_attrs.get("status") for t in trials)
  repeats = collections.Counter(t.user_attrs["reason"] for t in trials
                                if t.user_attrs.get("status") == "repeated")
  trained = status["trained"] + status["stopped"]
  print(f"| {name} | {len(trials)} | {trained} | {status['rejected']} | {status['repeated']} "
        f"| {max(repeats.values(), default=0)} |")
PY
