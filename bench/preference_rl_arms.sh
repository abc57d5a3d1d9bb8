#!/usr/bin/env bash
# The preference / RL arms of SmolLM2 from an SFT adapter, each sized by a wall-time budget, all
# evaluated on the same eval questions through `reactlab run`:
#
#   bash bench/preference_rl_arms.sh SFT_ADAPTER OUT [MINUTES]     (default 15 minutes per arm)
#   ARMS="dpo grpo" bash bench/preference_rl_arms.sh ...           (a subset; default: dpo kto grpo rloo)
#
# 1. OUT/sampled: the SFT model on 200 HotpotQA train questions, 4 sampled episodes each
#    (temperature 0.8, seeded per episode and step);
# 2. OUT/data-dpo, OUT/data-kto: preference rows from it (`pairing` in their stats.json says how
#    many questions were mixed); OUT/data-rl: GRPO/RLOO prompts of the questions some episode
#    solved (`--option solved_only=true`: a group that can differ in reward);
# 3. per arm: `reactlab train ARM` from the SFT adapter with `max_minutes=MINUTES` and a constant
#    learning rate, then the same 100 eval questions (chat layout, zero-shot, greedy);
# 4. a table: EM ± stderr, updates, training wall time, peak RSS, stopped by time.
# Every stage is skipped when its output is there (rerun to resume). Name the CPU with the figures.
set -euo pipefail
SFT=${1:?SFT adapter dir}; OUT=${2:?output dir}; MIN=${3:-15}
R=${REACTLAB:-reactlab}
RECIPES=$(python -c "from reactlab.paths import recipes_dir; print(recipes_dir())")
EVAL=(--model smollm2 --split eval --limit 100 --style chat --prompt zeroshot --max-steps 7 --batch-size 32 -q)
mkdir -p "$OUT"
grep -m1 "model name" /proc/cpuinfo | tee "$OUT/cpu.txt"
[ -f "$OUT/sampled/summary.json" ] && [ "$(python -c "import json;print(json.load(open('$OUT/sampled/summary.json'))['n'])")" = 800 ] || \
  $R run --model smollm2 --adapter "$SFT" --split train --limit 200 --seed 0 --style chat --prompt zeroshot \
     --max-steps 7 --batch-size 32 -c temperature=0.8 -c samples=4 --out "$OUT/sampled" -q
[ -f "$OUT/data-dpo/stats.json" ] || $R data build --from "$OUT/sampled" --format dpo --option pairs_per_question=3 --out "$OUT/data-dpo"
[ -f "$OUT/data-kto/stats.json" ] || $R data build --from "$OUT/sampled" --format kto --out "$OUT/data-kto"
[ -f "$OUT/data-rl/stats.json" ] || $R data build --from "$OUT/sampled" --format prompts --option solved_only=true \
  --val-frac 0 --tokenizer none --out "$OUT/data-rl"
common=(-c "model.adapter=$SFT" -c "max_minutes=$MIN" -c trl.lr_scheduler_type=constant_with_warmup -c trl.warmup_steps=2
        -c trl.save_steps=5)
# 8 episodes (one question) per update, in two micro-batches of 4 (GRPO peaked at 11.9 GB RSS so;
# with one batch of 8 it had passed 12 GB within its first update when it was stopped).
rl=(-c trl.learning_rate=3e-5 -c max_episode_steps=5 -c max_new_tokens=64
    -c trl.per_device_train_batch_size=4 -c trl.gradient_accumulation_steps=2)
for arm in ${ARMS:-dpo kto grpo rloo}; do
  case $arm in
    dpo) extra=(-c "data.path=$OUT/data-dpo" -c trl.num_train_epochs=5 -c trl.eval_steps=1000) ;;
    kto) extra=(-c "data.path=$OUT/data-kto" -c trl.eval_steps=1000) ;;
    grpo) extra=(-c "data.path=$OUT/data-rl" "${rl[@]}") ;;
    rloo) extra=(-c "data.path=$OUT/data-rl" "${rl[@]}" -c trl.beta=0.0) ;;  # no KL term: GRPO's cost
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
  [ -f "$OUT/$arm/training.json" ] || $R train "$arm" -c "$RECIPES/${arm}_smollm2_lora.yaml" -c "out=$OUT/$arm" "${common[@]}" "${extra[@]}"
  $R run "${EVAL[@]}" --adapter "$OUT/$arm" --out "$OUT/eval-$arm"
done
python - "$OUT" ${ARMS:-dpo kto grpo rloo} <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'arm':6s} {'EM':>13s} {'updates':>8s} {'train min':>10s} {'peak RSS GB':>12s} stopped_by_time")
for arm in sys.argv[2:]:
    s = json.loads((out / f"eval-{arm}/summary.json").read_text())
    r = json.loads((out / arm / "training.json").read_text())["result"]
    print(f"{arm:6s} {s['em']:.3f} ± {s['stderr']['em']:.3f} {r['steps']:8d} {r['wall_s'] / 60:10.1f} "
          f"{r['peak_mem_mb'] / 1024:12.1f} {r['extra'].get('stopped_by_time')}")
PY
