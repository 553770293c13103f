#!/usr/bin/env bash
# Every CIFAR-10 run that needs the 80-epoch ResNet-20 teacher, one after another, resumable.
#
#   setsid nohup bench/cifar10_chain.sh >> runs/cifar10_chain.log 2>&1 < /dev/null &
#   bench/cifar10_chain.sh --list     # the steps and which are done
#
# Each step is a command that itself resumes (finished stages are skipped, an epoch in progress
# restarts from its checkpoint, the search's Optuna study continues), so after the process
# stops, the same command goes on where it stopped, on the same machine. runs/ is not in git:
# the chain keeps it beside the checkout (../runs, linked as runs), so a new checkout on the
# same machine finds it; a new machine starts the chain over. A finished step writes
# runs/chain/<step>.done and is not run again; delete that file to rerun it. A failed step
# writes runs/chain/<step>.failed, the chain goes on, and the next start tries it again.
# Steps, in order (the open issue's first: on a new machine its results come soonest):
#   teacher    the 80-epoch ResNet-20 teacher and its 80 cached epochs of augmented views, in
#              e80's folder: what every later step reads
#   winner_a   device A's winner of the first run's distilled search (a DS-CNN; BENCHMARKS
#              §19), distilled from this teacher as a one-trial study: its 80 epochs, int8
#              export and LiteRT/TFLM check, hours before the whole search gets there (issue 14)
#   search     the device-budget search from that teacher, reading e80's cache (issue 14):
#              one study at a time, each with its winner retrained and verified before the
#              next (SEARCH_STUDIES, below), then the report over all of them (if several)
#   search_stopped  the search's closest stopped calls trained to the end: what Hyperband's
#              early stopping cost                                        (issue 14)
#   e80        the 80-epoch pipeline, its teacher stages done: the distilled (cached views)
#              ResNet-8, export, report                         (issue 13, BENCHMARKS §1)
#   e80_scratch  the ResNet-8 from scratch, in e80's folder (its report gains the row)
#   e80_live   the same distillation with the teacher live, same teacher        (issue 13)
#   e80_cycle20  the same from 20 of e80's 80 cached epochs, cycled 4 times: what cycling
#              costs in accuracy, with no teacher run at all                    (issue 13)
#              (`python -m bench.cached_vs_live` compares these three: BENCHMARKS §6)
#   selfsup, compressed_teacher, multitask, robust: the strategy benchmarks   (issue 18)
# Every step but the search trains in mixed bfloat16 (PRECISION below; tfkd.precision): about
# twice as fast for the ResNets on a CPU with AMX (BENCHMARKS §17), but slower for most of the
# search's candidate shapes, so the search trains in float32. Where bfloat16 is emulated (e.g.
# AVX2 only) it is slower: there run PRECISION=float32 bench/cifar10_chain.sh, and consider
# TF_ENABLE_ONEDNN_OPTS=1 (about 2x faster float32 steps there; no model of the search space has
# the narrow stem that made TensorFlow 2.21 abort with it: BENCHMARKS §20, bench/onednn.py).
# Run some steps only, in the order given: bench/cifar10_chain.sh teacher search
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PRECISION=${PRECISION:-mixed_bfloat16}
# The search's studies, in order: the issue's three first (device B distilled, the one no run
# has measured yet; device A distilled, whose found winner winner_a measured; device B from
# scratch), so that a session that ends mid-search has finished results (a new machine starts
# over). On a new machine, name only the studies still wanted; studies from scratch alone need
# no teacher: SEARCH_STUDIES=small_mcu/scratch bench/cifar10_chain.sh search
SEARCH_STUDIES=${SEARCH_STUDIES:-\
small_mcu/distill mlperf_tiny/distill small_mcu/scratch mlperf_tiny/scratch}
# One trial worker per core (tfkd.search_workers; bench/core_split.py: 1.1-1.3 times the trials).
SEARCH_WORKERS=${SEARCH_WORKERS:-$(nproc)}
TEACHER=runs/cifar10_e80/teacher/model.keras
[[ -e runs ]] || { mkdir -p ../runs && ln -s ../runs runs; }
mkdir -p runs/chain

e80_stages() {  # e80's run up to the given stages (finished ones are skipped)
  $PY -m tfkd.train --config=configs/cifar10_resnet.py --workdir=runs/cifar10_e80 \
    --config.stages="$1" --config.distill.cached_teacher=True --config.distill.cache_epochs=80 \
    --config.train.precision="$PRECISION"
}
run_teacher() { e80_stages '("teacher","teacher_views")'; }
run_e80() { e80_stages '("teacher","teacher_views","distill","export","report")'; }
run_e80_live() {
  $PY -m tfkd.train --config=configs/cifar10_resnet.py --workdir=runs/cifar10_e80_live \
    --config.teacher.path="$TEACHER" --config.stages='("distill","export","report")' \
    --config.train.precision="$PRECISION"
}
run_e80_scratch() {
  $PY -m tfkd.train --config=configs/cifar10_resnet.py --workdir=runs/cifar10_e80 \
    --config.stages='("scratch","export","report")' --config.train.precision="$PRECISION"
}
run_e80_cycle20() {
  $PY -m tfkd.train --config=configs/cifar10_resnet.py --workdir=runs/cifar10_e80_cycle20 \
    --config.teacher.path="$TEACHER" --config.distill.cached_teacher=True \
    --config.distill.cache_epochs=20 --config.distill.cache_dir=runs/cifar10_e80/teacher_views \
    --config.stages='("distill","export","report")' --config.train.precision="$PRECISION"
}
copy_teacher() {  # e80's teacher and views into a search's workdir, each whole or not at all
  local part
  mkdir -p "$1" &&
  for part in teacher teacher_views; do
    [ -e "$1/$part" ] || { rm -rf "$1/$part.tmp" && cp -r "runs/cifar10_e80/$part" "$1/$part.tmp" &&
      mv "$1/$part.tmp" "$1/$part"; } || return 1
  done
}
run_winner_a() {  # the first run's mlperf_tiny/distill winner; trials=1 makes it the winner
  copy_teacher runs/search_winner_a &&
  $PY -m bench.search --config=configs/cifar10_search.py --workdir=runs/search_winner_a \
    --out=runs/bench_search_winner_a --config.train.precision=float32 \
    --config.search.devices='("mlperf_tiny",)' --config.search.modes='("distill",)' \
    --config.search.trials=1 --config.search.epochs=1 \
    --config.search.start_from="({'family': 'ds_cnn', 'resolution': 32, 'blocks': 6, 'width': 24},)"
}
run_search() {  # float32: bfloat16 trains most candidates' shapes 1.4-5.9x slower (BENCHMARKS §17)
  mkdir -p runs/cifar10_search &&
  { [[ " $SEARCH_STUDIES" != *"/distill"* ]] ||  # studies from scratch need no teacher
    copy_teacher runs/cifar10_search; } &&
  local study devices=() modes=() studies=($SEARCH_STUDIES)
  for study in "${studies[@]}"; do  # each finished study has its winner before the next starts
    search_bench "${study%/*}" "${study#*/}" "runs/bench_search/${study/\//_}" || return 1
    [[ " ${devices[*]} " == *" ${study%/*} "* ]] || devices+=("${study%/*}")
    [[ " ${modes[*]} " == *" ${study#*/} "* ]] || modes+=("${study#*/}")
  done
  # The report over all of them (a lone study's own call has written it already).
  (( ${#studies[@]} == 1 )) || search_bench "${devices[*]}" "${modes[*]}" runs/bench_search
}
search_bench() {  # devices, modes (space-separated), out: bench.search over their studies
  $PY -m bench.search --config=configs/cifar10_search.py --workdir=runs/cifar10_search \
    --out="$3" --chain_log=runs/cifar10_chain.log --config.train.precision=float32 \
    --workers="$SEARCH_WORKERS" \
    --config.search.devices="$(py_tuple $1)" --config.search.modes="$(py_tuple $2)"
}
py_tuple() { local out="(" x; for x in "$@"; do out+="\"$x\","; done; echo "$out)"; }
run_search_stopped() {  # trains as the search's trials did (float32)
  [[ -e runs/chain/search.done ]] || { echo "search_stopped measures the finished search:" \
    "it runs after the search step is done" >&2; return 1; }
  $PY -m bench.search_stopped --config=configs/cifar10_search.py --workdir=runs/cifar10_search \
    --out=runs/bench_search_stopped --per_epoch=1 --config.train.precision=float32
}
run_robust() {
  $PY -m bench.robust --teacher="$TEACHER" --epochs=20 --seeds=0,1 --precision="$PRECISION" \
    --out=runs/bench_robust
}
run_compressed_teacher() {
  $PY -m bench.compressed_teacher --teacher_path="$TEACHER" --epochs=20 --seeds=0,1 \
    --precision="$PRECISION" --out=runs/bench_compressed_teacher
}
run_selfsup() {
  $PY -m bench.selfsup --teacher_path="$TEACHER" --epochs=20 --seeds=0,1 --precision="$PRECISION" \
    --out=runs/bench_selfsup
}
run_multitask() {  # its task-B teacher is trained here, 80 epochs as e80's task-A teacher
  $PY -m bench.multitask --teacher_a="$TEACHER" --teacher_epochs=80 --epochs=20 --seeds=0,1 \
    --precision="$PRECISION" --out=runs/bench_multitask
}

STEPS=(teacher winner_a search search_stopped e80 e80_scratch e80_live e80_cycle20 selfsup
       compressed_teacher multitask robust)
if [[ "${1:-}" == "--list" ]]; then
  for step in "${STEPS[@]}"; do
    if [[ -e runs/chain/$step.done ]]; then echo "$step: done $(cat runs/chain/$step.done)"
    elif [[ -e runs/chain/$step.failed ]]; then echo "$step: failed, $(cat runs/chain/$step.failed)"
    else echo "$step: to run"; fi
  done
  exit 0
fi
if [[ $# -gt 0 ]]; then
  for step in "$@"; do
    [[ " ${STEPS[*]} " == *" $step "* ]] ||
      { echo "Unknown step '$step': choose from ${STEPS[*]}." >&2; exit 2; }
  done
  STEPS=("$@")
fi
for step in "${STEPS[@]}"; do
  if [[ -e runs/chain/$step.done ]]; then
    echo "[chain] $step: done already (runs/chain/$step.done)"
    continue
  fi
  echo "[chain] $step: starting $(date -u +%FT%TZ)"
  start=$(date +%s)
  # A failed step does not stop the steps after it (each needs only the teacher; search_stopped
  # checks for the search): hours of machine would otherwise stand idle. Its rc and time go
  # to runs/chain/<step>.failed.
  if "run_$step"; then
    rm -f runs/chain/$step.failed
    echo "finished $(date -u +%FT%TZ) after $(( ($(date +%s) - start) / 60 )) min (this attempt)" \
      > runs/chain/$step.done
    echo "[chain] $step: $(cat runs/chain/$step.done)"
  else
    rc=$?
    echo "rc $rc at $(date -u +%FT%TZ) after $(( ($(date +%s) - start) / 60 )) min" \
      > runs/chain/$step.failed
    echo "[chain] $step: FAILED, $(cat runs/chain/$step.failed); the log above says why"
    failed=1
  fi
done
exit "${failed:-0}"
