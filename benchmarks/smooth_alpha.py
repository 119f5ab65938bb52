"""Which SmoothQuant alpha post-training quantization should smooth with, chosen without dev labels: the
one whose int8 model follows the fp32 model most closely on training rows.

    python benchmarks/smooth_alpha.py --data_dir $GLUE_DIR --tasks rte sst-2 --alphas 0.75 0.9 1.0
    python benchmarks/smooth_alpha.py --render_only        # RESULTS.md from results.json

For each task, on the fine-tuned and converted MiniLM of benchmarks/reproduce.py (the same work
folder, so a task reproduce.py prepared is not fine-tuned again): run.py with the shipped
configs/<task>_ptq.yaml and QuantPost.smooth_alpha set to each --alphas value, each in its own
process (its own dev evaluations, on a sample where the dev split is large, are not kept). Then the
fp32 model and each int8 model, as `infer.py --int8` deploys it, score the same seeded sample of
training rows (their labels are not read): the root mean square of the int8 logits' error against
the fp32 logits (STS-B: of the score), and the rows whose predicted class changes. An alpha's score
over the tasks is the geometric mean of its error relative to the first alpha's; the lowest wins. A
task's training rows may include some of the 320 its calibration drew.
Only then, when every task has run every alpha, is the dev split read: each int8 model's dev metric
through infer.py --int8 (the report's second table; not used for the choice; --skip_dev leaves it for
a later run). Resumable: finished runs are kept in <work_dir>/<task>/smooth_alpha.json.
"""
import argparse
import functools
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402
import numpy as np  # noqa: E402
import ptq_diagnostic  # noqa: E402
import reproduce  # noqa: E402

OUT_DIR = os.path.join(HERE, "smooth_alpha")
ROWS, ROWS_SEED = 512, 1  # the training rows both models score (glue.sample)


def training_feeds(task, base, data_dir):
    """The model feeds of ROWS seeded training rows, in batches of 64 padded as infer.py pads them."""
    tokenizer = glue.load_tokenizer(base)
    rows = glue.sample(glue.load_split(task, "train", data_dir), ROWS, seed=ROWS_SEED)
    features = [{k: v for k, v in f.items() if k != "label"}
                for f in glue.convert_examples(rows, tokenizer, reproduce.SEQ, task)]
    collate = glue.Collator(list(glue.INPUT_KEYS), tokenizer.pad_token_id, tokenizer.pad_token_type_id,
                            reproduce.SEQ, "max_length")
    return [feeds for feeds, _ in glue.batches(features, 64, collate)]


def logits(model_dir, feeds):
    """[rows, outputs] of a model (model.pdmodel in model_dir) as infer.py deploys it on this CPU."""
    import predictors

    model = predictors.read_model(os.path.join(model_dir, "model.pdmodel"), os.path.join(model_dir, "model.pdiparams"))
    predict, path = predictors.deployed_cpu_predictor(model, threads=len(os.sched_getaffinity(0)), what=model_dir)
    return np.concatenate([predict(f) for f in feeds]), path["precision"]


def run_task(task, args, save, read_dev):
    """Every alpha of one task, and with read_dev each one's dev metric; save(row) after each, so that a stopped
    run keeps what it finished."""
    work = os.path.join(args.work_dir, task)
    base = reproduce.prepare_base(task, args)
    config = os.path.join(common.ROOT, "configs", f"{task}_ptq.yaml")
    data = ["--data_dir", args.data_dir] if args.data_dir else []
    done = reproduce.Steps(os.path.join(work, "smooth_alpha.json"))

    @functools.cache
    def reference():  # the training rows' feeds and fp32 logits, once, and only if a run is not done yet
        feeds = training_feeds(task, base, args.data_dir)
        return feeds, logits(base, feeds)[0]

    base_model = reproduce.digest(reproduce.base_inputs(task))
    infer = ["--batch_size", "32", "--max_seq_length", str(reproduce.SEQ)] + data
    fp32 = reproduce.Steps(os.path.join(work, "steps.json")).run(  # the step of reproduce.py's run_task
        "infer_base", lambda: common.run_infer(task, base, infer, os.path.join(work, "dev", "base"))["metrics"],
        {"model": base_model})
    row = {"task": task, "metric": glue.headline_metric(task), "config": os.path.relpath(config, common.ROOT),
           "rows": ROWS, "fp32_dev": fp32["headline"], "runs": {}}
    inputs = {"model": base_model, "config": reproduce.config_digest(config), "rows": [ROWS, ROWS_SEED, "max_length"]}
    for alpha in args.alphas:
        name = f"smooth_alpha {alpha:g}"
        folder = os.path.join(work, "smooth_alpha", f"alpha_{alpha:g}")

        def measure(alpha=alpha, folder=folder):
            run = ptq_diagnostic.run_variant(  # run.py's own dev evaluations on a sample where dev is large
                task, base, config, [f"QuantPost.smooth_alpha={alpha}"] + reproduce.eval_sample(task), folder, data)
            feeds, fp32_logits = reference()
            quantized, precision = logits(folder, feeds)
            error = quantized - fp32_logits
            flips = None if glue.get_task(task).is_regression else \
                int((quantized.argmax(-1) != fp32_logits.argmax(-1)).sum())
            return {"alpha": alpha, "rms_error": float(np.sqrt(np.mean(error ** 2))), "flips": flips,
                    "deployed_as": precision, "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"]}

        row["runs"][name] = {**done.run(name, measure, {**inputs, "alpha": alpha})}  # a copy: "dev" goes in
        dev = f"{name}, dev"
        if read_dev or done.is_done(dev, {**inputs, "alpha": alpha}):
            row["runs"][name]["dev"] = done.run(dev, lambda folder=folder: common.run_infer(
                task, folder, ["--int8"] + infer, folder + "_dev")["metrics"]["headline"], {**inputs, "alpha": alpha})
        save(row)
    return row


def alphas_of(results):
    """Every alpha run, in the order the tasks ran them: the first is the one the others are compared with."""
    return list(dict.fromkeys(run["alpha"] for row in results["tasks"] for run in row["runs"].values()))


def by_alpha(row):
    return {run["alpha"]: run for run in row["runs"].values()}


def scores(results):
    """{alpha: geometric mean over the tasks of its rms error over the first alpha's}, over tasks that ran them all."""
    alphas = alphas_of(results)
    complete = [runs for runs in map(by_alpha, results["tasks"]) if set(alphas) <= set(runs)]
    if not complete:
        return {}
    return {alpha: math.exp(np.mean([math.log(runs[alpha]["rms_error"] / runs[alphas[0]]["rms_error"])
                                     for runs in complete])) for alpha in alphas}


def render(results):
    intro = (f"Each cell: run.py with the task's `configs/<task>_ptq.yaml` and `QuantPost.smooth_alpha` set to the "
             f"column's value; the int8 model, as `infer.py --int8` deploys it, against the fp32 model on the same "
             f"{ROWS} training rows (a seeded sample, labels not read): the root mean square of the error of its "
             "logits (STS-B: of its score), and in brackets the rows whose predicted class changed. No dev label "
             "enters it (run.py's own evaluations of the dev split are not kept). A task's rows may include some of "
             "the 320 its calibration drew.")
    return "\n".join(["# PTQ: which smoothing alpha follows the fp32 model most closely", "",
                      common.provenance(results), "", intro, "", summary(results)])


def summary(results):
    """The table of errors per task and alpha, their geometric mean, and the alpha closest to fp32."""
    if not results["tasks"]:
        return "No task has run yet.\n"
    alphas = alphas_of(results)
    lines = ["| task | " + " | ".join(f"alpha {a:g}" for a in alphas) + " |", "|---|" + "---|" * len(alphas)]
    for row in results["tasks"]:
        runs = by_alpha(row)
        cells = [f"{runs[a]['rms_error']:.3f}" + ("" if runs[a]["flips"] is None else f" ({runs[a]['flips']})")
                 if a in runs else "–" for a in alphas]
        lines.append(f"| {row['task']} | " + " | ".join(cells) + " |")
    score = scores(results)
    if score:
        best, *rest = sorted(score, key=score.get)
        runner_up = f"; the next, alpha {rest[0]:g}, {score[rest[0]]:.2f}" if rest else ""
        lines += [f"| error over alpha {alphas[0]:g}, geometric mean | " +
                  " | ".join(f"{score[a]:.2f}" for a in alphas) + " |", "",
                  f"Closest to fp32 over the tasks that ran every alpha: alpha {best:g} ({score[best]:.2f} of alpha "
                  f"{alphas[0]:g}'s error{runner_up})."]
    lines += ["", "The dev split, read after the measurement above and not by it: each model's dev metric as "
              "`infer.py --int8` deploys it, change against fp32 in points.", "",
              "| task (fp32) | " + " | ".join(f"alpha {a:g}" for a in alphas) + " |", "|---|" + "---|" * len(alphas)]
    for row in results["tasks"]:
        runs = by_alpha(row)
        cells = [f"{100 * (runs[a]['dev'] - row['fp32_dev']):+.2f}" if "dev" in runs.get(a, {}) else "–"
                 for a in alphas]
        lines.append(f"| {row['task']} {row['metric']} ({100 * row['fp32_dev']:.2f}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_benchmark_args(parser, OUT_DIR)
    parser.add_argument("--tasks", nargs="+", type=glue.task_arg, default=list(reproduce.FINETUNE))
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.75, 0.85, 0.9, 0.95, 1.0],
                        help="QuantPost.smooth_alpha values; the first is the one the others are compared with "
                             "(default: %(default)s)")
    parser.add_argument("--skip_dev", action="store_true",
                        help="measure the choice only; the dev metrics already read are reported, the others are "
                             "read by a later run without it")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def measure(results, save):
        results["tasks"] = []

        def save_row(row):
            rows = {**{r["task"]: r for r in results["tasks"]}, row["task"]: row}
            results["tasks"] = [rows[task] for task in args.tasks if task in rows]
            save()

        for read_dev in (False,) if args.skip_dev else (False, True):  # every task's choice, then the dev split
            for task in args.tasks:
                run_task(task, args, save_row, read_dev)

    return common.benchmark_main(args, "benchmarks/smooth_alpha.py", argv, measure, render)


if __name__ == "__main__":
    cli.cli(main)
