"""Copy the benchmark tables into README.md, so that no number in it is typed by hand.

    python benchmarks/render_readme.py

Each `<!-- results:NAME -->` ... `<!-- /results:NAME -->` block of README.md is replaced by the
short table rendered from benchmarks/NAME/results.json (NAME: a key of RENDERERS); a NAME#tasks
block gets a second table (for reproduce: the table per task) from the same file. The full tables are
in each benchmark's RESULTS.md.
"""
import argparse
import functools
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "latency"))

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import bench_latency  # noqa: E402
import ptq_diagnostic  # noqa: E402
import reproduce  # noqa: E402
import smooth_alpha  # noqa: E402
import train_iter  # noqa: E402

# results folder under benchmarks/ (then #table, for a second table from the same folder) -> its renderer
# (<name>/avx2: the benchmark on an AVX2-only CPU)
RENDERERS = {"reproduce": reproduce.headline, "reproduce#tasks": reproduce.task_table,
             "reproduce/avx2": functools.partial(reproduce.headline, folder="reproduce/avx2"),
             "reproduce/avx2#tasks": reproduce.task_table,
             "reproduce/prune_lr1e-4": functools.partial(reproduce.headline, folder="reproduce/prune_lr1e-4"),
             "reproduce/longer_finetune": functools.partial(reproduce.headline, folder="reproduce/longer_finetune"),
             "latency": bench_latency.summary, "latency/avx2": bench_latency.summary,
             "ptq_diagnostic": ptq_diagnostic.summary, "ptq_diagnostic/padding": ptq_diagnostic.padding_summary,
             "ptq_diagnostic/calibration_draws": ptq_diagnostic.draws_summary,
             "ptq_diagnostic/rte_draws": functools.partial(ptq_diagnostic.draws_summary, folder="ptq_diagnostic/rte_draws"),
             "ptq_diagnostic/rte_draws_alpha1": functools.partial(ptq_diagnostic.draws_summary,
                                                                  folder="ptq_diagnostic/rte_draws_alpha1"),
             "train_iter/sts-b": train_iter.summary, "train_iter/cola": train_iter.summary,
             "train_iter/rte_seeds": train_iter.summary, "smooth_alpha": smooth_alpha.summary}


def results_file(name):
    return os.path.join(HERE, name.split("#")[0], "results.json")


def block(name):
    with open(results_file(name)) as f:
        return RENDERERS[name](json.load(f)).strip()


def main(argv=None):
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    path = os.path.join(common.ROOT, "README.md")
    with open(path) as f:
        readme = f.read()
    for name in RENDERERS:
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if pattern.search(readme) and os.path.isfile(results_file(name)):
            readme = pattern.sub(lambda m: m.group(1) + block(name) + "\n" + m.group(2), readme)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(readme)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
