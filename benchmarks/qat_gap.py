"""How far QAT's own evaluation is from the QAT model as deployed: dev rows apart, per task.

    python benchmarks/qat_gap.py --data_dir $GLUE_DIR --tasks rte cola   # reproduce.py's QAT models
    python benchmarks/qat_gap.py --render_only

PaddleSlim picks the QAT model it saves by evaluating the training program: every quantized input
through its fake-quant pair, in fp32. `infer.py --int8` deploys that model with oneDNN int8 linear
layers and everything else, attention's two matmuls included, in fp32. For each task's distill + QAT
model in reproduce.py's work folder, the whole dev split runs three ways, and the rows whose
predicted class differs from the deployed model's are counted:
- deployed: `infer.py --int8`;
- fake-quant: `infer.py --no-enable_mkldnn` on the saved model, its fake-quant ops run as they are;
- fake-quant, attention fp32: the same on a copy (<work_dir>/<task>/qat_gap/model) in which each
  matmul of two activations reads past the quantize/dequantize pair in front of its inputs.
PaddleSlim's evaluation during training is the second for a model trained with attention
fake-quantized, the third for one trained with `QuantAware.skip_attention` (its saved model still
carries attention's pairs, their scales being what TensorRT's int8 reads).
Results: benchmarks/qat_gap/results.json and RESULTS.md.
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402

OUT_DIR = os.path.join(HERE, "qat_gap")
RUNS = {"deployed": ["--int8"], "fake_quant": ["--no-enable_mkldnn"],
        "fake_quant_attention_fp32": ["--no-enable_mkldnn"]}
LABELS = {"deployed": "deployed (`--int8`)", "fake_quant": "fake-quant", "fake_quant_attention_fp32":
          "fake-quant, attention fp32"}


def unquantize_attention(block, scope):
    """Rewires each matmul of two activations (no weight read, directly or through a dequantize_linear) past
    the quantize_linear -> dequantize_linear pair in front of each input, in place; returns the inputs rewired."""
    import smooth
    import workarounds

    producer = {n: op for op in block.ops for n in op.output_arg_names}
    persistable = {v.name for v in block.vars.values() if v.persistable}

    def made_by(name, op_type):
        op = producer.get(name)
        return op if op is not None and op.type == op_type else None

    rewired = 0
    for op in block.ops:
        if op.type not in smooth.LINEAR_TYPES or workarounds.weight_input(op, producer, persistable) is not None:
            continue
        for name in op.input_arg_names:
            dequantize = made_by(name, "dequantize_linear")
            quantize = dequantize and made_by(dequantize.input("X")[0], "quantize_linear")
            if quantize:
                op._rename_input(name, quantize.input("X")[0])
                rewired += 1
    return rewired


def attention_fp32_copy(model_dir, out_dir):
    """model_dir's model with unquantize_attention applied, and its tokenizer files, in out_dir (this
    benchmark's work folder); returns the inputs rewired."""
    import predictors

    rewired = []
    prefix = os.path.join(model_dir, "model")
    model, params = predictors.edited_model(predictors.read_model(prefix + ".pdmodel", prefix + ".pdiparams"),
                                            lambda block, scope: rewired.append(unquantize_attention(block, scope)))
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(model_dir):  # the tokenizer and its config
        if not name.startswith("model.") and name != "results.json" and os.path.isfile(os.path.join(model_dir, name)):
            shutil.copy(os.path.join(model_dir, name), out_dir)
    for name, data in (("model.pdmodel", model), ("model.pdiparams", params)):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
    return rewired[0]


def predictions(save_dir):
    with open(os.path.join(save_dir, "predictions.json")) as f:
        return next(iter(json.load(f).values()))["prediction"]


def measure_task(task, args):
    """One task's entry: each run's dev metric and its rows apart from the deployed model."""
    work = os.path.join(args.work_dir, task)
    qat = os.path.join(work, "distill_qat")
    with open(os.path.join(qat, "results.json")) as f:
        compressed = json.load(f)
    gap_dir = os.path.join(work, "qat_gap")
    rewired = attention_fp32_copy(qat, os.path.join(gap_dir, "model"))
    data = ["--data_dir", args.data_dir] if args.data_dir else []
    entry = {"skip_attention": bool(compressed["config"]["QuantAware"].get("skip_attention")),
             "attention_inputs_quantized": rewired, "runs": {}}
    for run, flags in RUNS.items():
        model = os.path.join(gap_dir, "model") if run == "fake_quant_attention_fp32" else qat
        save = os.path.join(gap_dir, run)
        result = common.run_infer(task, model, flags + data + ["--batch_size", "32", "--max_seq_length",
                                                               str(args.max_seq_length), "--cpu_threads",
                                                               str(os.cpu_count() or 1)], save)
        entry["runs"][run] = {"metrics": result["metrics"], "predictions": predictions(save)}
    deployed = entry["runs"]["deployed"]["predictions"]
    for run in entry["runs"].values():
        run["rows_apart"] = sum(a != b for a, b in zip(run.pop("predictions"), deployed))
        run["rows"] = len(deployed)
    return entry


def render(results):
    lines = ["# QAT's own evaluation against the model as deployed", "", common.provenance(results), "",
             "Dev metric (points) of each task's distill + QAT model (benchmarks/reproduce.py's) run three ways; "
             "in brackets, the dev rows whose predicted class differs from the deployed model's.", "",
             "| task | attention in training | attention inputs with a Q/DQ pair, saved model | "
             + " | ".join(LABELS.values()) + " |",
             "|---|---|---|" + "---|" * len(LABELS)]
    for task, entry in results["tasks"].items():
        trained = "fake_quant_attention_fp32" if entry["skip_attention"] else "fake_quant"
        cells = [task, "fp32 (`skip_attention`)" if entry["skip_attention"] else "fake-quantized",
                 str(entry["attention_inputs_quantized"])]
        for run in LABELS:
            r, bold = entry["runs"][run], "**" if run == trained else ""
            cells.append(f"{bold}{r['metrics']['headline'] * 100:.2f} ({r['rows_apart']} of {r['rows']}){bold}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Deployed: `infer.py --int8`, oneDNN int8 linear layers, attention in fp32. Fake-quant: the saved "
              "model's fake-quant ops run in fp32 without oneDNN (`infer.py --no-enable_mkldnn`). Attention fp32: "
              "the same, with each matmul of two activations reading past its quantize/dequantize pairs. In bold, "
              "the one PaddleSlim's evaluations during training computed: the model trained with `skip_attention` "
              "saves attention's pairs (their scales are what TensorRT's int8 reads) but trained without them."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_benchmark_args(parser, OUT_DIR)
    parser.add_argument("--tasks", nargs="+", type=glue.task_arg, default=["rte", "cola"],
                        help="tasks whose <work_dir>/<task>/distill_qat model reproduce.py finished "
                             "(default: %(default)s; the fake-quant runs are slow: minutes per thousand rows)")
    parser.add_argument("--max_seq_length", type=int, default=128)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def measure(results, save):
        from tqdm import tqdm

        results["tasks"] = {}
        for task in tqdm(args.tasks, desc="tasks"):
            if glue.get_task(task).is_regression:
                raise cli.InputError(f"{task} is a regression task: its rows have no predicted class to compare; "
                                     "pick classification tasks")
            if not os.path.isfile(os.path.join(args.work_dir, task, "distill_qat", "model.pdmodel")):
                raise cli.InputError(f"no distill + QAT model of {task} in {args.work_dir}: run "
                                     f"benchmarks/reproduce.py --tasks {task} first")
            results["tasks"][task] = measure_task(task, args)
            save()

    return common.benchmark_main(args, "benchmarks/qat_gap.py", argv, measure, render)


if __name__ == "__main__":
    cli.cli(main)
