"""Compression benchmark: each run.py strategy on a real fine-tuned model and real GLUE dev data.

    python benchmarks/finetune.py --task_name sst-2 --max_seq_length 64 --max_train_samples 8000 \
        --output_dir benchmarks/work/minilm-sst2
    python benchmarks/compress/bench_compress.py --model_dir benchmarks/work/minilm-sst2 --task_name sst-2

Converts the fine-tuned PyTorch model with convert.py (trace), checks `run.py --eval` against
the PyTorch dev metric, then runs run.py with the shipped configs of the task, bounded by
--set overrides so that a CPU run is short, and records the dev metric before and after each
strategy and its wall time in results.json and RESULTS.md next to this file.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import glue  # noqa: E402
import convert  # noqa: E402
import run  # noqa: E402


def strategies(task, args):
    """(name, config file, --set overrides) per strategy; the overrides keep a CPU run short."""
    stem = glue.canonical_task(task)
    common = [f"Global.batch_size={args.batch_size}", f"Global.max_seq_length={args.max_seq_length}",
              "Global.padding=max_length", "TrainConfig.origin_metric=null"]
    train = [f"TrainConfig.train_iter={args.train_iter}", f"TrainConfig.eval_iter={args.eval_iter}",
             "TrainConfig.epochs=null"]
    qat_lr = ["TrainConfig.learning_rate=1.0e-5"]  # the document's 1e-6 is tuned for 3 full epochs
    return [
        ("distill + QAT", f"{stem}.yaml", common + train + qat_lr),
        ("prune + distill, then PTQ-HPO", f"{stem}_prune_ptq.yaml",
         common + train + [f"HyperParameterOptimization.max_quant_count={args.max_quant_count}"]),
        ("PTQ", f"{stem}.yaml", common + train + ["QuantPost.batch_size=32", "QuantPost.batch_nums=10"]),
        ("auto (Global + TrainConfig only)", f"{stem}.yaml", common + train),
    ]


def write_variant(src, dst, keep, extra=None):
    """Copy a config keeping Global and the `keep` sections, plus `extra` ones (PTQ alone, auto)."""
    import yaml

    with open(src) as f:
        config = yaml.safe_load(f)
    config = {k: v for k, v in config.items() if k == "Global" or k in keep}
    config.update(extra or {})
    with open(dst, "w") as f:
        yaml.safe_dump(config, f)
    return dst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="a fine-tuned HF model folder (benchmarks/finetune.py)")
    parser.add_argument("--task_name", required=True, type=glue.canonical_task)
    parser.add_argument("--data_dir", default=None, help="GLUE folder (default: $GLUE_DIR)")
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--train_iter", type=int, default=100)
    parser.add_argument("--eval_iter", type=int, default=50)
    parser.add_argument("--max_quant_count", type=int, default=4)
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "benchmarks", "work", "compress"))
    parser.add_argument("--out_dir", default=HERE)
    parser.add_argument("--only", nargs="*", help="run only the strategies whose names start with these")
    args = parser.parse_args(argv)
    glue.setup_logging()
    data_dir = glue.resolve_data_dir(args.data_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    stages = {}

    with open(os.path.join(args.model_dir, "finetune.json")) as f:
        torch_metrics = json.load(f)["dev_metrics"]
    converted = os.path.join(args.work_dir, "converted")
    start = time.perf_counter()
    convert.main(["--model_name_or_path", args.model_dir, "--method", "trace", "--max_seq_length",
                  str(args.max_seq_length), "--save_dir", converted, "--overwrite"])
    stages["convert_seconds"] = round(time.perf_counter() - start, 1)

    configs = os.path.join(args.work_dir, "configs")
    os.makedirs(configs, exist_ok=True)
    base = os.path.join(ROOT, "configs", strategies(args.task_name, args)[0][1])
    files = {
        "PTQ": write_variant(base, os.path.join(configs, "ptq.yaml"), keep=[],
                             extra={"QuantPost": {"quantize_op_types": ["matmul", "matmul_v2"], "onnx_format": True}}),
        "auto (Global + TrainConfig only)": write_variant(base, os.path.join(configs, "auto.yaml"),
                                                          keep=["TrainConfig"]),
    }

    eval_args = ["--config_path", base, "--model_dir", converted, "--data_dir", data_dir, "--eval",
                 "--save_dir", os.path.join(args.work_dir, "eval_base"),
                 "--set", f"Global.batch_size={args.batch_size}", "--set", f"Global.max_seq_length={args.max_seq_length}"]
    start = time.perf_counter()
    base_eval = run.main(eval_args)
    stages["eval_seconds"] = round(time.perf_counter() - start, 1)

    rows, commands = [], []
    previous = os.path.join(args.out_dir, "results.json")
    if args.only and os.path.isfile(previous):  # --only reruns some strategies and keeps the other rows
        with open(previous) as f:
            old = json.load(f)
        rows = [r for r in old["strategies"] if not any(r["strategy"].startswith(o) for o in args.only)]
        commands = old.get("commands", [old.get("command")])
    args.commands = commands + ["python " + " ".join([os.path.relpath(__file__, ROOT)] + (argv or sys.argv[1:]))]
    for name, config_file, overrides in strategies(args.task_name, args):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        path = files.get(name, os.path.join(ROOT, "configs", config_file))
        if name == "PTQ":
            overrides = [o for o in overrides if not o.startswith("TrainConfig")]
        save_dir = os.path.join(args.work_dir, name.split()[0])
        argv_ = ["--config_path", path, "--model_dir", converted, "--data_dir", data_dir,
                 "--save_dir", save_dir, "--overwrite"]
        for o in overrides:
            argv_ += ["--set", o]
        start = time.perf_counter()
        result = run.main(argv_)
        wall = round(time.perf_counter() - start, 1)
        rows.append({"strategy": name, "config": os.path.relpath(path, ROOT), "overrides": overrides,
                     "paddleslim_strategies": result["strategies"], "metrics_before": result["metrics_before"],
                     "metrics_after": result["metrics_after"], "compress_seconds": result["compress_seconds"],
                     "wall_seconds": wall,
                     "model_bytes": sum(os.path.getsize(os.path.join(save_dir, n))
                                        for n in ("model.pdmodel", "model.pdiparams"))})
        glue.write_json(os.path.join(args.out_dir, "results.json"), summary(args, torch_metrics, base_eval,
                                                                            stages, rows, converted))
    results = summary(args, torch_metrics, base_eval, stages, rows, converted)
    glue.write_json(os.path.join(args.out_dir, "results.json"), results)
    with open(os.path.join(args.out_dir, "RESULTS.md"), "w") as f:
        f.write(render(results))
    print(render(results))
    return results


def summary(args, torch_metrics, base_eval, stages, rows, converted):
    return {"commands": args.commands, "machine": common.machine(),
            "versions": convert.library_versions(), "task_name": args.task_name,
            "pytorch_dev_metrics": torch_metrics, "converted_dev_metrics": base_eval["metrics"],
            "base_model_bytes": sum(os.path.getsize(os.path.join(converted, n))
                                    for n in ("model.pdmodel", "model.pdiparams")),
            **stages, "strategies": rows}


def render(results):
    headline = glue.headline_metric(results["task_name"])
    lines = [f"# Compression benchmark: {results['task_name']}", "",
             f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores. Versions: "
             + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", "",
             "Commands: " + "; ".join(f"`{c}`" for c in results["commands"]), "",
             f"PyTorch dev {headline}: {results['pytorch_dev_metrics']['headline']:.4f}; the converted model "
             f"through `run.py --eval`: {results['converted_dev_metrics']['headline']:.4f} "
             f"(conversion {results['convert_seconds']} s, evaluation {results['eval_seconds']} s).", "",
             f"| strategy | PaddleSlim ran | dev {headline} before | after | change | compress wall s | "
             "model MB |", "|---|---|---|---|---|---|---|"]
    for r in results["strategies"]:
        before, after = r["metrics_before"]["headline"], r["metrics_after"]["headline"]
        lines.append(f"| {r['strategy']} | {' + '.join(r['paddleslim_strategies'])} | {before:.4f} | {after:.4f} | "
                     f"{100 * (after - before):+.2f} pt | {r['compress_seconds']:.0f} | "
                     f"{r['model_bytes'] / 1e6:.1f} (base {results['base_model_bytes'] / 1e6:.1f}) |")
    lines += ["", "Each row runs run.py with the shipped config of the task and these overrides (a short CPU run, "
              "not the document's 3 epochs); PTQ alone and auto use a copy of it that keeps Global plus QuantPost "
              "(PTQ) or TrainConfig (auto), written by the script:", ""]
    for r in results["strategies"]:
        lines.append(f"- {r['strategy']}: `{r['config']}` " + " ".join(f"`--set {o}`" for o in r["overrides"]))
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    glue.cli(main)
