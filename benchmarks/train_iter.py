"""How many training steps distillation needs: dev metric against TrainConfig.train_iter, one task.

    python benchmarks/train_iter.py --data_dir $GLUE_DIR --task sst-2 --train_iters 40 120 360
    python benchmarks/train_iter.py --data_dir $GLUE_DIR --task sts-b --train_iters 60 \
        --strategies distill_qat distill_qat_head_int8 --save_dir benchmarks/train_iter/sts-b
    python benchmarks/train_iter.py --render_only        # RESULTS.md from results.json

On the fine-tuned and converted MiniLM of benchmarks/reproduce.py (the same work folder, so a task
reproduce.py prepared is not fine-tuned again), each training strategy of the reproduction runs
with each step count, in its own process: pruning + distillation then PTQ (without its
hyper-parameter search, so that only the training changes: QuantPost as the config sets it), and
distillation + QAT; and on request distillation + QAT with the pooler and classifier quantized too
(QuantAware.skip_head false: the shipped configs keep them fp32). The dev metric of each is
infer.py --int8's on the whole dev split, as the model is deployed; wall time and peak resident
memory come from the run.py process. Resumable: finished runs are kept in
<work_dir>/<task>/train_iter.json.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402
import reproduce  # noqa: E402

OUT_DIR = os.path.join(HERE, "train_iter")
# key -> the reproduction's strategy it runs, the config sections left out, --set overrides, its column
STRATEGIES = {
    "prune_ptq": ("prune_ptq", ["HyperParameterOptimization"], [], reproduce.STRATEGIES["prune_ptq"]["label"]),
    "distill_qat": ("distill_qat", [], [], reproduce.STRATEGIES["distill_qat"]["label"]),
    "distill_qat_head_int8": ("distill_qat", [], ["QuantAware.skip_head=false"],
                              "distill + QAT, pooler + classifier int8 too"),
}


def run_one(task, key, train_iter, base, work, data):
    """One strategy at one step count: run.py, then infer.py --int8 on the whole dev split."""
    folder = os.path.join(work, "train_iter", f"{key}_{train_iter}")
    os.makedirs(folder, exist_ok=True)
    strategy, drop, extra, _ = STRATEGIES[key]
    config, sets = reproduce.strategy_config(task, strategy, folder, train_iter, drop=drop)
    sets += extra
    out = os.path.join(folder, "model")
    compressed = reproduce.compress(config, base, out, data + [a for s in sets for a in ("--set", s)])
    deployed = common.run_infer(task, out, ["--int8", "--batch_size", "32", "--max_seq_length", str(reproduce.SEQ)]
                                + data, os.path.join(folder, "infer"))
    return {"metrics": deployed["metrics"], "before": compressed["metrics_before"],
            "strategies": compressed["strategies"], "compress_seconds": compressed["compress_seconds"],
            "peak_rss_mb": compressed["peak_rss_mb"], "sets": sets,
            "skip_head": compressed["config"].get("QuantAware", {}).get("skip_head")}


def column(run):
    """The strategy a run measured: a distill + QAT run from before QuantAware.skip_head (no such field)
    quantized the pooler and classifier too."""
    if run["strategy"] == "distill_qat" and "skip_head" not in run:
        return "distill_qat_head_int8"
    return run["strategy"]


def render(results):
    runs = results["runs"]
    cell = {(column(r), r["train_iter"]): r for r in runs.values()}
    keys = [k for k in STRATEGIES if any(c == k for c, _ in cell)]
    lines = ["# Distillation: dev metric against training steps", "", common.provenance(results), "",
             f"Task {results['task']} ({results['metric']}), MiniLM fine-tuned and converted as in "
             "benchmarks/reproduce.py, batch 32. Each cell: dev metric on the whole dev split as `infer.py --int8` "
             "deploys the compressed model, its change against the fp32 model, and run.py's wall time. The prune "
             "rows run without the hyper-parameter search (QuantPost as configured), so only the training "
             "changes. One run per cell: differences of a few tenths of a point may be noise.", "",
             "| train_iter | " + " | ".join(STRATEGIES[k][3] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for steps in sorted({r["train_iter"] for r in runs.values()}):
        cells = []
        for key in keys:
            run = cell.get((key, steps))
            if run:
                metric, base = run["metrics"]["headline"], run["before"]["headline"]
                cells.append(f"{100 * metric:.2f} ({100 * (metric - base):+.2f}), {run['compress_seconds']:.0f} s")
            else:
                cells.append("–")
        lines.append(f"| {steps} | " + " | ".join(cells) + " |")
    planned = results.get("runs_planned", len(runs))
    if len(runs) < planned:
        lines.append(f"\n{len(runs)} of {planned} runs so far; the same command resumes the rest.")
    lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_benchmark_args(parser, OUT_DIR)
    parser.add_argument("--task", type=glue.task_arg, default="sst-2")
    parser.add_argument("--train_iters", type=int, nargs="+", default=[40, 120, 360])
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=["prune_ptq", "distill_qat"])
    args = parser.parse_args(argv)
    if min(args.train_iters) < 1:
        parser.error("--train_iters must be 1 or more")
    return args


def main(argv=None):
    args = parse_args(argv)

    def measure(results, save):
        results.update(task=args.task, metric=glue.headline_metric(args.task), runs={},
                       runs_planned=len(args.train_iters) * len(args.strategies))
        work = os.path.join(args.work_dir, args.task)
        base = reproduce.prepare_base(args.task, args)
        data = ["--data_dir", args.data_dir] if args.data_dir else []
        done = reproduce.Steps(os.path.join(work, "train_iter.json"))
        for steps in sorted(args.train_iters):  # every strategy at a count before the next, longer count
            for key in args.strategies:
                name = f"{key}_{steps}"
                results["runs"][name] = {"strategy": key, "train_iter": steps, **done.run(
                    name, lambda: run_one(args.task, key, steps, base, work, data))}
                save()

    return common.benchmark_main(args, "benchmarks/train_iter.py", argv, measure, render)


if __name__ == "__main__":
    cli.cli(main)
