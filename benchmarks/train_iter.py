"""How many training steps distillation needs: dev metric against TrainConfig.train_iter, one task.

    python benchmarks/train_iter.py --data_dir $GLUE_DIR --task sst-2 --train_iters 40 120 360
    python benchmarks/train_iter.py --data_dir $GLUE_DIR --task sts-b --train_iters 60 --strategies distill_qat \
        distill_qat_unsmoothed distill_qat_head_fp32 distill_qat_no_pact --save_dir benchmarks/train_iter/sts-b
    python benchmarks/train_iter.py --data_dir $GLUE_DIR --task sst-2 --train_iters 60 --strategies prune_fp32 \
        --learning_rates 2e-5 1e-4 --save_dir benchmarks/train_iter/sst-2
    python benchmarks/train_iter.py --data_dir $GLUE_DIR --task rte --train_iters 60 120 --strategies distill_qat \
        --seeds 0 1 2 3 4 --save_dir benchmarks/train_iter/rte_seeds
    python benchmarks/train_iter.py --render_only        # RESULTS.md from results.json

On the fine-tuned and converted MiniLM of benchmarks/reproduce.py (the same work folder, so a task
reproduce.py prepared is not fine-tuned again), each training strategy of the reproduction runs
with each step count (and at each --learning_rates value and each --seeds value, a column each), in
its own process: pruning + distillation then PTQ (without its hyper-parameter search, so that only
the training changes: QuantPost as the config sets it), and distillation + QAT; and on request variants of
distillation + QAT that change QuantAware values of the shipped config, and pruning + distillation
alone (prune_fp32: what the pruning costs before any quantization), each in a column of its own
(see STRATEGIES). The dev metric of each is infer.py --int8's on the whole dev split, as the model
is deployed (prune_fp32's: infer.py in fp32), with the dev rows it turned wrong and right against
the fp32 model's predictions (infer.py on it, once per base); wall time and peak resident memory come
from the run.py process. Resumable: finished runs are kept in <work_dir>/<task>/train_iter.json.
"""
import argparse
import collections
import itertools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402
import reproduce  # noqa: E402

OUT_DIR = os.path.join(HERE, "train_iter")
LR_SET = "TrainConfig.learning_rate="
SEED_SET = "Global.seed="
# The QuantAware values that tell distill + QAT runs apart, with the defaults of run.py and PaddleSlim.
QAT_FIELDS = {"smooth_alpha": None, "skip_head": False, "use_pact": False, "skip_attention": False}
# key -> the reproduction's strategy it runs, the config sections left out, QuantAware values that differ from
# the shipped config's, its column
STRATEGIES = {
    "prune_ptq": ("prune_ptq", ["HyperParameterOptimization"], {}, reproduce.STRATEGIES["prune_ptq"]["label"]),
    "prune_fp32": ("prune_ptq", ["QuantPost", "HyperParameterOptimization"], {},
                   "prune + distill, not quantized (fp32)"),
    "distill_qat": ("distill_qat", [], {}, reproduce.STRATEGIES["distill_qat"]["label"]),
    "distill_qat_attention_quantized": ("distill_qat", [], {"skip_attention": False},
                                        "distill + QAT, attention fake-quantized"),
    "distill_qat_unsmoothed": ("distill_qat", [], {"smooth_alpha": None, "skip_attention": False},
                               "distill + QAT, not smoothed (the document's QuantAware)"),
    "distill_qat_head_fp32": ("distill_qat", [], {"smooth_alpha": None, "skip_head": True, "skip_attention": False},
                              "distill + QAT, not smoothed, pooler + classifier fp32"),
    "distill_qat_no_pact": ("distill_qat", [], {"smooth_alpha": None, "use_pact": False, "skip_attention": False},
                            "distill + QAT, not smoothed, no PACT"),
}


def qat_variants(task):
    """{distill + QAT key: the QAT_FIELDS values it runs with}: the shipped config's, then the reproduction's
    QuantAware overrides, then the variant's."""
    import run

    config = reproduce.shipped_config(task, "distill_qat")
    run.apply_overrides(config, reproduce.STRATEGIES["distill_qat"]["set"], "reproduce.STRATEGIES")
    config = config.get("QuantAware") or {}
    return {key: {k: values.get(k, config.get(k, default)) for k, default in QAT_FIELDS.items()}
            for key, (strategy, _, values, _) in STRATEGIES.items() if strategy == "distill_qat"}


def set_value(sets, prefix, kind):
    """The value of the --set override starting with `prefix` (LR_SET, SEED_SET) as `kind`; None: the config's."""
    return next((kind(s[len(prefix):]) for s in sets if s.startswith(prefix)), None)


def run_name(key, train_iter, lr=None, seed=None):
    """A run's name among the finished steps: the strategy and step count, the learning rate it trains
    at where an override sets it (`lr`, else the reproduction's), and the seed where one is given."""
    if lr is None:
        lr = set_value(reproduce.STRATEGIES[STRATEGIES[key][0]]["set"], LR_SET, float)
    return f"{key}_{train_iter}" + ("" if lr is None else f"_lr{lr:g}") + ("" if seed is None else f"_seed{seed}")


def run_folder(work, name):
    """Where a run (or, named "base", the fp32 model's dev predictions) keeps its model and infer.py's output."""
    return os.path.join(work, "train_iter", name)


def run_one(task, key, train_iter, base, work, data, lr=None, seed=None):
    """One strategy at one step count (at learning rate `lr` in place of the reproduction's, and with
    Global.seed `seed`, which draws the training batches, in place of the config's, if given): run.py, then
    infer.py --int8 on the whole dev split (its predictions.json in <folder>/infer)."""
    folder = run_folder(work, run_name(key, train_iter, lr, seed))
    os.makedirs(folder, exist_ok=True)
    strategy, drop, values, _ = STRATEGIES[key]
    config, sets = reproduce.strategy_config(task, strategy, folder, train_iter, drop=drop)
    sets += [f"QuantAware.{k}={json.dumps(v)}" for k, v in values.items()]
    if lr is not None:
        text = repr(float(lr))  # YAML reads 2e-05 as text, 2.0e-05 as a number
        sets = [s for s in sets if not s.startswith(LR_SET)] + [LR_SET + (text if "." in text else
                                                                          text.replace("e", ".0e"))]
    if seed is not None:
        sets.append(f"{SEED_SET}{seed}")
    out = os.path.join(folder, "model")
    compressed = reproduce.compress(config, base, out, data + [a for s in sets for a in ("--set", s)])
    precision = [] if "QuantPost" in drop else ["--int8"]  # pruned only: no quantize ops to run in int8
    deployed = common.run_infer(task, out, precision + ["--batch_size", "32", "--max_seq_length", str(reproduce.SEQ)]
                                + data, os.path.join(folder, "infer"))
    result = {"metrics": deployed["metrics"], "before": compressed["metrics_before"],
              "strategies": compressed["strategies"], "compress_seconds": compressed["compress_seconds"],
              "peak_rss_mb": compressed["peak_rss_mb"], "sets": sets}
    if strategy == "distill_qat":
        section = compressed["config"]["QuantAware"]
        result["quant_aware"] = {k: section.get(k, default) for k, default in QAT_FIELDS.items()}
    return result


def column(run, variants, task):
    """The column of a run, (STRATEGIES key, learning rate, seed): for distill + QAT, the variant (qat_variants)
    whose QuantAware values it ran with (runs from before those were recorded ran the document's
    QuantAware, with the pooler and classifier fp32 where they record skip_head true; runs from before
    skip_attention was recorded trained attention fake-quantized); the learning rate
    its --set overrides gave it, else its config's; the Global.seed they gave it, else None."""
    lr, seed = set_value(run.get("sets", []), LR_SET, float), set_value(run.get("sets", []), SEED_SET, int)
    if lr is None:
        lr = reproduce.shipped_config(task, STRATEGIES[run["strategy"]][0])["TrainConfig"]["learning_rate"]
    if not run["strategy"].startswith("distill_qat"):
        return run["strategy"], lr, seed
    ran = {**QAT_FIELDS, **(run.get("quant_aware") or {"use_pact": True, "skip_head": bool(run.get("skip_head"))})}
    return next((k for k, v in variants.items() if v == ran), run["strategy"]), lr, seed


def label(col):
    key, lr, seed = col
    return f"{STRATEGIES[key][3]}, lr {lr:g}" + ("" if seed is None else f", seed {seed}")


def ordered(col):
    """Columns in STRATEGIES' order, then by learning rate, then by seed (the config's first)."""
    return list(STRATEGIES).index(col[0]), col[1], -1 if col[2] is None else col[2]


def base_metric(results, run):
    """The fp32 model's dev metric on the whole dev split (the converted model's, where recorded; before
    that, what run.py scored it before compressing, on Global.eval_samples rows where the task sets them)."""
    return results.get("base_metrics", run["before"])["headline"]


def change_cell(results, run):
    """A run's dev metric, its change against the fp32 model, and the dev rows it turned wrong and right."""
    metric, base = run["metrics"]["headline"], base_metric(results, run)
    changed = run.get("changed")
    rows = f"; {changed['to_wrong']} ✗ {changed['to_right']} ✓" if changed else ""
    return f"{100 * metric:.2f} ({100 * (metric - base):+.2f}{rows})"


def render(results):
    runs = results["runs"]
    variants = qat_variants(results["task"])
    cell = {(column(r, variants, results["task"]), r["train_iter"]): r for r in runs.values()}
    keys = sorted({c for c, _ in cell}, key=ordered)
    rows = ", the dev rows it turned wrong ✗ and right ✓" if any(r.get("changed") for r in runs.values()) else ""
    seeds = " A seed is Global.seed, which draws the training batches." if any(k[2] is not None for k in keys) else ""
    lines = ["# Distillation: dev metric against training steps", "", common.provenance(results), "",
             f"Task {results['task']} ({results['metric']}), MiniLM fine-tuned and converted as in "
             "benchmarks/reproduce.py, batch 32. Each cell: dev metric on the whole dev split as `infer.py --int8` "
             "deploys the compressed model (the fp32 column: `infer.py` without it), its change against the fp32 "
             f"model{rows}, and run.py's wall time.{seeds} A training keeps the best of PaddleSlim's evaluations (on "
             "the dev split, or its Global.eval_samples rows), at half and at all of its steps, not necessarily its "
             "last model. The prune + PTQ rows run without the hyper-parameter search (QuantPost as configured), so "
             "only the training changes. One run per cell: differences of a few tenths of a point may be noise.", "",
             "| train_iter | " + " | ".join(label(k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for steps in sorted({r["train_iter"] for r in runs.values()}):
        cells = []
        for key in keys:
            run = cell.get((key, steps))
            if run:
                cells.append(f"{change_cell(results, run)}, {run['compress_seconds']:.0f} s")
            else:
                cells.append("–")
        lines.append(f"| {steps} | " + " | ".join(cells) + " |")
    lines += seed_lines(results, [(col, run) for (col, _), run in cell.items()])
    planned = results.get("runs_planned", len(runs))
    if len(runs) < planned:
        lines.append(f"\n{len(runs)} of {planned} runs so far; the same command resumes the rest.")
    lines.append("")
    return "\n".join(lines)


def seed_lines(results, runs):
    """Where a strategy ran with more than one seed at a step count: the mean and range of its change, and
    (where each run's changed rows are known) how many dev rows a seed changed on average, how many changed
    in any seed, and of those that changed in most seeds, how many the fp32 model had right: the rows whose
    flip recurs, and which way.

    Args:
        runs: (column, run) pairs.
    """
    draws = {}
    for (key, lr, seed), run in sorted(runs, key=lambda cr: (ordered(cr[0]), cr[1]["train_iter"])):
        if seed is not None:
            draws.setdefault((key, lr, run["train_iter"]), []).append(run)
    lines = []
    for (key, lr, steps), group in draws.items():
        if len(group) < 2:
            continue
        d = [run["metrics"]["headline"] - base_metric(results, run) for run in group]
        line = (f"- {label((key, lr, None))}, {steps} steps, over {len(d)} seeds: mean change "
                f"{100 * sum(d) / len(d):+.2f}, from {100 * min(d):+.2f} to {100 * max(d):+.2f}")
        if all(run.get("changed") for run in group):
            rows = sum(run["changed"]["to_wrong"] + run["changed"]["to_right"] for run in group) / len(group)
            line += f"; dev rows changed: {rows:.1f} per seed on average"
            if all("wrong_rows" in run["changed"] for run in group):
                turned = collections.Counter(i for run in group for i in run["changed"]["wrong_rows"]
                                             + run["changed"]["right_rows"])
                right = {i for run in group for i in run["changed"]["wrong_rows"]}  # right in fp32
                most = [i for i, n in turned.items() if 2 * n > len(group)]
                line += (f", {len(turned)} in some seed; the {len(most)} that changed in most seeds: "
                         f"{sum(i in right for i in most)} right in fp32, {sum(i not in right for i in most)} wrong")
        lines.append(line)
    return [""] + lines if lines else []


def summary(results):
    """The README's short table: each run's dev metric and its change, a row per column and step count (a
    strategy's seeds together at each step count)."""
    variants = qat_variants(results["task"])
    runs = sorted(((column(r, variants, results["task"]), r) for r in results["runs"].values()),
                  key=lambda kr: (ordered(kr[0])[:2], kr[1]["train_iter"], ordered(kr[0])[2:]))
    base = base_metric(results, runs[0][1])
    lines = [f"| {results['task']}, deployed with `--int8` | train_iter | {results['metric']} "
             f"(fp32 {100 * base:.2f}) |", "|---|---|---|"]
    for col, run in runs:
        lines.append(f"| {label(col)} | {run['train_iter']} | {change_cell(results, run)} |")
    return "\n".join(lines + seed_lines(results, runs))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_benchmark_args(parser, OUT_DIR)
    parser.add_argument("--task", type=glue.task_arg, default="sst-2")
    parser.add_argument("--train_iters", type=int, nargs="+", default=[40, 120, 360])
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=["prune_ptq", "distill_qat"])
    parser.add_argument("--learning_rates", type=float, nargs="+", default=[None], metavar="LR",
                        help="TrainConfig.learning_rate of every run, each in turn (default: the reproduction's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[None], metavar="SEED",
                        help="Global.seed of every run, each in turn: other draws of the training batches "
                             "(default: the config's)")
    args = parser.parse_args(argv)
    if min(args.train_iters) < 1:
        parser.error("--train_iters must be 1 or more")
    if any(lr is not None and lr <= 0 for lr in args.learning_rates):
        parser.error("--learning_rates must be above 0")
    if any(seed is not None and seed < 0 for seed in args.seeds):
        parser.error("--seeds must be 0 or more")
    return args


def main(argv=None):
    args = parse_args(argv)

    def measure(results, save):
        results.update(task=args.task, metric=glue.headline_metric(args.task), runs={},
                       runs_planned=len(args.train_iters) * len(args.strategies) * len(args.learning_rates)
                       * len(args.seeds))
        work = os.path.join(args.work_dir, args.task)
        base = reproduce.prepare_base(args.task, args)
        results["base_metrics"] = reproduce.Steps(os.path.join(work, "steps.json")).done["eval_converted"]["result"]
        data = ["--data_dir", args.data_dir] if args.data_dir else []
        done = reproduce.Steps(os.path.join(work, "train_iter.json"))
        model = reproduce.digest(reproduce.base_inputs(args.task))
        # the fp32 model's predictions, which each run's changed dev rows are counted against (below)
        done.run("infer_base", lambda: common.run_infer(
            args.task, base, ["--batch_size", "32", "--max_seq_length", str(reproduce.SEQ)] + data,
            run_folder(work, "base"))["metrics"], {"model": model})
        for steps in sorted(args.train_iters):  # every strategy at a count before the next, longer count
            for key in args.strategies:
                config = reproduce.config_digest(reproduce.shipped_path(args.task, STRATEGIES[key][0]))
                for lr, seed in itertools.product(args.learning_rates, args.seeds):
                    name = run_name(key, steps, lr, seed)
                    results["runs"][name] = {"strategy": key, "train_iter": steps, **done.run(
                        name, lambda: run_one(args.task, key, steps, base, work, data, lr, seed),
                        {"model": model, "config": config})}
                    # read from the predictions each time: None where either file is gone (or a regression task)
                    results["runs"][name]["changed"] = reproduce.changed_rows(
                        os.path.join(run_folder(work, "base"), "predictions.json"),
                        os.path.join(run_folder(work, name), "infer", "predictions.json"), indices=True)
                    save()

    return common.benchmark_main(args, "benchmarks/train_iter.py", argv, measure, render)


if __name__ == "__main__":
    cli.cli(main)
