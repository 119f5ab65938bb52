"""Where post-training quantization loses dev metric, and which calibration choice wins it back.

    python benchmarks/ptq_diagnostic.py --data_dir $GLUE_DIR --tasks sst-2 sts-b --bert_base
    python benchmarks/ptq_diagnostic.py --render_only        # RESULTS.md from results.json
    python benchmarks/ptq_diagnostic.py --data_dir $GLUE_DIR --tasks sst-2 sts-b --padding \
        --save_dir benchmarks/ptq_diagnostic/padding
    python benchmarks/ptq_diagnostic.py --data_dir $GLUE_DIR --tasks cola rte sst-2 --draws \
        --save_dir benchmarks/ptq_diagnostic/calibration_draws

For each task, on the fine-tuned and converted MiniLM of benchmarks/reproduce.py (the same work
folder, so a task reproduce.py prepared is not fine-tuned again): run.py with the shipped
configs/<task>_ptq.yaml without its smoothing and head skip (every linear layer quantized), changing
one thing at a time, each run in its own process.

- the shipped config as it is (QuantPost.smooth_alpha 0.75, smooth.py; QuantPost.skip_head: pooler and
  classifier in fp32), smoothing alone, and algo avg alone; abs_max smoothed.
- layer groups (algo avg, no smoothing): only one group of linear layers quantized (`QuantPost.skip_tensor_list` holds
  the weights of every other one): each encoder layer; q/k/v, attention output, FFN, FFN in or
  FFN out of every layer; pooler + classifier; the attention matmuls (Q.K^T, softmax.V) alone. The embeddings are
  not quantized by any shipped config (quantize_op_types: matmul, matmul_v2).
- calibration, one change at a time from PaddleSlim's default (algo hist): algorithm (KL, mse,
  avg, abs_max), number of calibration batches, bias correction, one weight scale per tensor
  instead of per output channel. (Calibrating on real tokens only, batches padded to their
  longest row, needs a model converted with --method onnx: a trace model's length is fixed;
  --padding measures whether the padded positions move the ranges at all.)

With --padding, in place of those: whether padding sets the ranges calibration and smoothing read
(each linear layer's input over real tokens against every position, padding included).

With --draws, in place of those: the shipped config with each number of calibration batches
(--batch_nums) and each Global.seed (--seeds, which draws other calibration batches): how far one
draw moves the result, and whether more batches steady it; --set adds an override to every draw.

The dev metric of each is run.py's own after-metric, measured as `infer.py --int8` deploys the
model (oneDNN int8 linear layers), on the whole dev split; a run finished before the fix for
Paddle's fc weight scales (workarounds.onednn_fc_weight_scales) has its saved model scored again.
Wall time and peak resident memory come from each process (wait4). Resumable: finished runs are
kept in <work_dir>/<task>/ptq_diagnostic.json.
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402
import reproduce  # noqa: E402

OUT_DIR = os.path.join(HERE, "ptq_diagnostic")
# One calibration choice changed at a time from PaddleSlim's default QuantPost (algo hist), the
# rest of configs/<task>_ptq.yaml as shipped, without smoothing and with every linear layer
# quantized (the pooler and classifier too) unless the run names it.
HIST = "QuantPost.algo=hist"
BASELINE = "algo: hist (PaddleSlim's default)"
AVG = "algo: avg"  # the algorithm configs/<task>_ptq.yaml ships; the layer groups run on it
SMOOTHED = "algo: avg, smoothed (smooth_alpha 0.75)"
SHIPPED = "algo: avg, smoothed, pooler + classifier in fp32"  # configs/<task>_ptq.yaml as it is
PLAIN = ["QuantPost.smooth_alpha=null", "QuantPost.skip_head=false"]
SMOOTH = "QuantPost.smooth_alpha=0.75"
ABS_MAX_SMOOTHED = "algo: abs_max, smoothed"
# Each of these models is scored twice more: through its fake-quant graph in fp32 (the arithmetic of
# int8 kernels that sum in 32 bits: VNNI, AMX) and by OpenVINO in int8 (7-bit weights on a CPU without them).
SCORED_THREE_WAYS = (AVG, SMOOTHED, SHIPPED)
CALIBRATION = {
    BASELINE: [*PLAIN, HIST],
    "algo: KL": [*PLAIN, "QuantPost.algo=KL"],
    "algo: mse": [*PLAIN, "QuantPost.algo=mse"],
    AVG: [*PLAIN, "QuantPost.algo=avg"],
    SMOOTHED: ["QuantPost.algo=avg", SMOOTH, "QuantPost.skip_head=false"],
    SHIPPED: ["QuantPost.algo=avg", SMOOTH, "QuantPost.skip_head=true"],
    "algo: abs_max": [*PLAIN, "QuantPost.algo=abs_max"],
    ABS_MAX_SMOOTHED: ["QuantPost.algo=abs_max", SMOOTH, "QuantPost.skip_head=false"],
    "3 calibration batches": [*PLAIN, HIST, "QuantPost.batch_nums=3"],
    "30 calibration batches": [*PLAIN, HIST, "QuantPost.batch_nums=30"],
    "bias correction": [*PLAIN, HIST, "QuantPost.bias_correction=true"],
    "per-tensor weight scales": [*PLAIN, HIST, "QuantPost.weight_quantize_type=abs_max"],
}
LINEAR_PER_LAYER = ("q", "k", "v", "attention output", "FFN in", "FFN out")  # program order of a BERT layer


def layer_groups(model_file):
    """{group name: the tensors whose ops make up the group} for a converted BERT's quantizable matmuls.

    Linear layers read a weight (persistable); the attention matmuls read two activations. In the
    converted program each encoder layer has q, k, v, Q.K^T, softmax.V, attention output, FFN in,
    FFN out, in that order, and the pooler and classifier come last.
    """
    import files

    block = files.read_program(model_file).blocks[0]
    persistable = {v.name for v in block.vars if v.persistable}
    linear, attention = [], []
    for op in block.ops:
        if op.type not in ("matmul", "matmul_v2"):
            continue
        names = [n for arg in op.inputs for n in arg.arguments]
        weights = [n for n in names if n in persistable]
        (linear if weights else attention).append(weights[0] if weights else names[0])
    layers = (len(linear) - 2) // len(LINEAR_PER_LAYER)
    if layers < 1 or len(linear) != layers * len(LINEAR_PER_LAYER) + 2 or len(attention) != 2 * layers:
        raise RuntimeError(f"{model_file}: {len(linear)} linear and {len(attention)} attention matmuls do not "
                           "make a BERT encoder + pooler + classifier")
    per_layer = len(LINEAR_PER_LAYER)
    groups = {f"encoder layer {i}": linear[i * per_layer:(i + 1) * per_layer] + attention[2 * i:2 * i + 2]
              for i in range(layers)}
    groups["q, k, v (all layers)"] = [w for i, w in enumerate(linear[:-2]) if i % per_layer < 3]
    groups["attention output (all layers)"] = [w for i, w in enumerate(linear[:-2]) if i % per_layer == 3]
    groups["FFN (all layers)"] = [w for i, w in enumerate(linear[:-2]) if i % per_layer > 3]
    groups["FFN in (all layers)"] = [w for i, w in enumerate(linear[:-2]) if i % per_layer == 4]
    groups["FFN out (all layers)"] = [w for i, w in enumerate(linear[:-2]) if i % per_layer == 5]
    groups["attention matmuls (all layers)"] = attention
    groups["pooler + classifier"] = linear[-2:]
    return groups, linear + attention


def variants(model_file):
    """{name: run.py --set overrides} for every run of the diagnostic, the most telling first.

    PaddleSlim's default, the shipped algorithm, smoothed, the shipped config; each kind of layer
    alone (algo avg, no smoothing); the other calibration choices; each encoder layer alone.
    """
    groups, every = layer_groups(model_file)
    only = {f"only {name}": [*PLAIN, "QuantPost.algo=avg",
                             "QuantPost.skip_tensor_list=" + json.dumps([t for t in every if t not in tensors])]
            for name, tensors in groups.items()}
    first = [BASELINE, AVG, SMOOTHED, SHIPPED, ABS_MAX_SMOOTHED] + [
        n for n in only if not n.startswith("only encoder layer")]
    runs = {name: (CALIBRATION | only)[name] for name in first}
    return runs | CALIBRATION | only


def draws(batch_nums, seeds, extra=()):
    """{name: run.py --set overrides}: the shipped config, with `extra` (--set), with each calibration batch count
    and each seed."""
    named = "".join(f", {e}" for e in extra)
    return {f"{n} calibration batches, seed {seed}{named}":
            [*CALIBRATION[SHIPPED], *extra, f"QuantPost.batch_nums={n}", f"Global.seed={seed}"]
            for n in batch_nums for seed in seeds}


ACTIVATION_KINDS = {"layer_norm": "LayerNorm output", "reshape2": "attention context", "gelu": "GELU output"}


def padding_ranges(task, base, config, data_dir):
    """Whether padded positions set the ranges that calibration and smoothing read.

    On a seeded sample of the shipped config's calibration rows (QuantPost.batch_nums batches of its
    batch_size, padded to max_seq_length as run.py pads them), for each linear layer's input: the mean
    over batches of each batch's largest |x| (what algo avg makes the scale) over real tokens and over
    every position, the batches whose largest |x| sat on a padded position, and per channel the largest
    |x| over every position against over real tokens (smoothing's ranges).
    """
    import numpy as np
    import paddle
    import yaml

    import smooth

    with open(config) as f:
        config = yaml.safe_load(f)
    gcfg, qcfg = config["Global"], config["QuantPost"]
    tokenizer = glue.load_tokenizer(base)
    rows = glue.convert_examples(glue.sample(glue.load_split(task, "train", data_dir),
                                             qcfg["batch_nums"] * qcfg["batch_size"]),
                                 tokenizer, gcfg["max_seq_length"], task)
    collate = glue.Collator(gcfg["input_names"], tokenizer.pad_token_id, tokenizer.pad_token_type_id,
                            gcfg["max_seq_length"])
    paddle.enable_static()
    exe, scope = paddle.static.Executor(paddle.CPUPlace()), paddle.static.Scope()  # the model's weights: its own scope
    with paddle.static.scope_guard(scope):
        program, _, _ = paddle.static.load_inference_model(os.path.join(base, "model"), exe)
    block = program.global_block()
    made_by = {n: op.type for op in block.ops for n in op.output_arg_names}
    # per token ([batch, length, channels]); the pooler's and classifier's inputs hold one row per sentence
    names = [n for n in smooth.linear_inputs(block) if len(block.var(n).shape) == 3]
    stats = {n: {"real": [], "all": [], "channel_real": 0.0, "channel_all": 0.0} for n in names}
    for start in range(0, len(rows), qcfg["batch_size"]):
        feeds = collate.collate_feeds(rows[start:start + qcfg["batch_size"]])
        real = feeds[gcfg["input_names"][1]].astype(bool)
        for name, value in zip(names, exe.run(program, feed=feeds, fetch_list=names, scope=scope)):
            value, stat = np.abs(value), stats[name]
            stat["real"].append(float(value[real].max()))
            stat["all"].append(float(value.max()))
            stat["channel_real"] = np.maximum(stat["channel_real"], value[real].max(axis=0))
            stat["channel_all"] = np.maximum(stat["channel_all"], value.reshape(-1, value.shape[-1]).max(axis=0))
    lengths = [len(r["input_ids"]) for r in rows]
    activations = []
    for name, stat in stats.items():
        ratio = stat["channel_all"] / np.maximum(stat["channel_real"], 1e-12)
        activations.append({"activation": name, "kind": ACTIVATION_KINDS.get(made_by[name], made_by[name]),
                             "avg_real": float(np.mean(stat["real"])), "avg_all": float(np.mean(stat["all"])),
                             "batches_set_by_padding": sum(a > r for a, r in zip(stat["all"], stat["real"])),
                             "channel_ratio_median": float(np.median(ratio)), "channel_ratio_max": float(ratio.max())})
    return {"task": task, "batches": -(-len(rows) // qcfg["batch_size"]), "batch_size": qcfg["batch_size"],
            "max_seq_length": gcfg["max_seq_length"], "mean_tokens": float(np.mean(lengths)),
            "activations": activations}


def run_variant(task, base, config, sets, save_dir, data):
    """run.py in its own process: (its results.json, wall seconds, peak RSS in MB)."""
    argv = [os.path.join(common.ROOT, "run.py"), "--config_path", config, "--model_dir", base,
            "--save_dir", save_dir, "--overwrite"] + data + [a for s in sets for a in ("--set", s)]
    result, seconds, peak_mb = common.run_script(argv, os.path.join(save_dir + ".log"))
    return {"metrics": result["metrics_after"], "before": result["metrics_before"],
            "evaluated_with": result["evaluated_with"]["after"], "seconds": seconds, "peak_rss_mb": peak_mb, "peak_rss_own": True,
            "compress_seconds": result["compress_seconds"], "quant_post": result["config"]["QuantPost"],
            "padding": result["config"]["Global"]["padding"]}  # the effective settings, no machine paths


def run_task(task, args, save):
    """Every run of one task; save(row) after each, so that a stopped diagnostic keeps what it finished."""
    work = os.path.join(args.work_dir, task)
    base = reproduce.prepare_base(task, args)
    config = os.path.join(common.ROOT, "configs", f"{task}_ptq.yaml")
    data = ["--data_dir", args.data_dir] if args.data_dir else []
    done = reproduce.Steps(os.path.join(work, "ptq_diagnostic.json"))
    from tqdm import tqdm

    runs = draws(args.batch_nums, args.seeds, args.set) if args.draws else variants(os.path.join(base, "model.pdmodel"))
    row = {"task": task, "metric": glue.headline_metric(task), "config": os.path.relpath(config, common.ROOT),
           "runs_planned": len(runs), "runs": {}}
    budget = args.max_new_runs
    base_model, config_text = reproduce.digest(reproduce.base_inputs(task)), reproduce.config_digest(config)
    for name, sets in tqdm(runs.items(), desc=f"ptq diagnostic {task}"):
        inputs = {"model": base_model, "config": config_text, "sets": sets}
        if not done.is_done(name, inputs):
            if budget == 0:
                continue  # left for a later invocation; the report says how many runs are done
            budget = None if budget is None else budget - 1
        folder = folder_of(work, name)
        run = done.run(name, lambda: {"sets": sets, **run_variant(task, base, config, sets, folder, data)}, inputs)
        model = {"model": reproduce.digest(inputs)}
        infer = ["--batch_size", "32", "--max_seq_length", str(reproduce.SEQ)] + data
        if "int8_weight_bits" not in run["evaluated_with"]:  # scored before workarounds.onednn_fc_weight_scales
            deployed = done.run(f"{name}, int8 scored again", lambda: common.run_infer(
                task, folder, infer + ["--int8"], folder + "_int8"), model)
            run = {**run, "metrics_before_weight_scale_fix": run["metrics"], "metrics": deployed["metrics"],
                   "evaluated_with": {k: deployed[k] for k in ("backend", "device", "precision", "cpu_int8_ops",
                                                               "int8_weight_bits")}}
        row["runs"][name] = run
        if name in SCORED_THREE_WAYS:  # how much of the deployed loss is this CPU's int8 kernels' own
            row.setdefault("fake_quant", {})[name] = done.run(f"{name}, fake-quant graph", lambda: common.run_infer(
                task, folder, infer, folder + "_fake_quant")["metrics"], model)
            row.setdefault("openvino", {})[name] = done.run(f"{name}, OpenVINO int8", lambda: common.run_infer(
                task, folder, infer + ["--int8", "--backend", "openvino"], folder + "_openvino")["metrics"], model)
        save(row)
    return row


def folder_of(work, name):
    return os.path.join(work, "ptq_diagnostic", re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"))


def bert_base_memory(args):
    """run.py with configs/sst-2_ptq.yaml on a BERT-base-sized model (random weights): its wall time and peak RSS."""
    import convert

    work = os.path.join(args.work_dir, "bert-base-random")
    os.makedirs(work, exist_ok=True)
    steps = reproduce.Steps(os.path.join(work, "steps.json"))
    hf, base = os.path.join(work, "hf"), os.path.join(work, "paddle-fp32")
    steps.run("model", lambda: common.save_random_bert_base(hf))
    steps.run("convert", lambda: convert.main(["--model_name_or_path", hf, "--method", "trace", "--max_seq_length",
                                               str(reproduce.SEQ), "--save_dir", base, "--overwrite"])["parity"])
    config = os.path.join(common.ROOT, "configs", "sst-2_ptq.yaml")
    data = ["--data_dir", args.data_dir] if args.data_dir else []
    return steps.run("ptq", lambda: run_variant("sst-2", base, config, [], os.path.join(work, "ptq"), data),
                     {"config": reproduce.config_digest(config)})


def cell(metrics, base):
    """A dev metric in points and its change against the fp32 model's: '82.07 (-1.31)'."""
    return f"{100 * metrics['headline']:.2f} ({100 * (metrics['headline'] - base):+.2f})"


def render(results):
    lines = ["# Post-training quantization: where the dev metric goes", "", common.provenance(results), ""]
    if results["tasks"]:
        lines += ["Each row is run.py with the task's `configs/<task>_ptq.yaml` without its smoothing "
                 "(`QuantPost.smooth_alpha`) and with the pooler and classifier quantized (`QuantPost.skip_head: "
                 "false`), and one change: the rows that name smoothing add it, the one that also keeps the pooler and "
                 f"classifier in fp32 ({SHIPPED}) is the config as shipped, the calibration rows change one thing "
                 "from PaddleSlim's default QuantPost (algo hist), the `only ...` rows quantize one "
                 "group of layers with algo avg (no smoothing) and keep the others in fp32. Dev metric of the "
                 "compressed model on the whole dev split, as `infer.py --int8` deploys it (oneDNN int8 linear "
                 "layers; runs finished before the fix for Paddle's fc weight scales, workarounds.onednn_fc_weight_scales, "
                 "had their saved model scored again, and results.json keeps their old score as "
                 "`metrics_before_weight_scale_fix`); change against the fp32 model in points; wall time and peak "
                 "resident memory of the "
                 "run.py process (wall times are indicative: some runs shared the 2 cores with other jobs). Each row is "
                 "one draw of calibration batches, so differences of a few tenths of a point may be noise.", ""]
    for row in results["tasks"]:
        runs = row["runs"]
        base = next(iter(runs.values()))["before"]["headline"]
        done = "" if len(runs) == row.get("runs_planned", len(runs)) else \
            f" ({len(runs)} of {row['runs_planned']} runs so far)"
        lines += [f"## {row['task']} ({row['metric']}, fp32 {100 * base:.2f}){done}", "",
                  "| run | deployed as | dev metric | change | wall s | peak RSS GiB |", "|---|---|---|---|---|---|"]
        for name, run in runs.items():
            metric = run["metrics"]["headline"]
            lines.append(f"| {name} | {run['evaluated_with']['precision']} | {100 * metric:.2f} | {100 * (metric - base):+.2f} | {run['seconds']:.0f} | "
                         f"{common.peak_gib(run)} |")
        lines.append("")
        scored = [n for n in SCORED_THREE_WAYS if n in runs and n in row.get("openvino", {})]
        if scored:
            lines += ["The same models three ways: Paddle Inference with oneDNN int8 kernels on this CPU (`infer.py "
                      "--int8`, the table above); their fake-quant graph in fp32 (`infer.py` without `--int8`: "
                      "the arithmetic of int8 kernels that sum in 32 bits, VNNI or AMX); OpenVINO in int8 "
                      "(`--backend openvino --int8`, 7-bit weights on a CPU without VNNI/AMX).", "",
                      "| run | oneDNN int8 | fake-quant graph | OpenVINO int8 |", "|---|---|---|---|"]
            lines += [f"| {n} | " + " | ".join(cell(m, base) for m in (runs[n]["metrics"], row["fake_quant"][n],
                                                                       row["openvino"][n])) + " |" for n in scored]
            lines.append("")
    lines += draws_table(results["tasks"])
    for row in results.get("padding", []):
        lines += padding_table(row)
    memory = results.get("bert_base_memory")
    if memory:
        shape = common.BERT_BASE
        lines += [f"## Memory at BERT-base size ({shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}, "
                  "random weights)", "",
                  "run.py with `configs/sst-2_ptq.yaml` (calibration: "
                  f"{memory['calibration']}), calibrating and scoring on SST-2: peak resident memory "
                  f"{common.peak_gib(memory, 2)} GiB, wall time {memory['seconds']:.0f} s.", ""]
    if any("†" in line for line in lines):
        lines += [common.PEAK_UPPER_BOUND, ""]
    return "\n".join(lines)


def padding_table(row):
    """padding_ranges of one task as a table, one line per linear layers' input."""
    lines = [f"## {row['task']}: does padding set the ranges calibration reads?", "",
             f"{row['batches']} calibration batches of {row['batch_size']} training rows (a seeded sample), padded to "
             f"{row['max_seq_length']} tokens as run.py pads them; {row['mean_tokens']:.1f} real tokens per row on "
             "average. Per linear layers' input: the mean over batches of each batch's largest |x| (the scale algo avg "
             "sets) over real tokens and over every position, the batches whose largest |x| sat on a padded "
             "position, and per channel the largest |x| over every position over that over real tokens (the "
             "ranges smoothing divides by).", "",
             "| input of | calibration range, real tokens | every position | batches set by padding | "
             "per channel, padding included / real tokens: median | largest |", "|---|---|---|---|---|---|"]
    for a in row["activations"]:
        lines.append(f"| {a['kind']} ({a['activation']}) | {a['avg_real']:.3f} | {a['avg_all']:.3f} | "
                     f"{a['batches_set_by_padding']} of {row['batches']} | {a['channel_ratio_median']:.2f} | "
                     f"{a['channel_ratio_max']:.2f} |")
    return lines + [""]


def draws_table(tasks):
    """The --draws runs: per task and calibration batch count, the change in each seed's draw, their mean and worst."""
    grids = []
    for row in tasks:
        grid = {}
        for run in row["runs"].values():
            sets = dict(s.split("=", 1) for s in run.get("sets", []))
            if "Global.seed" in sets:
                extra = tuple(s for s in run["sets"] if s not in CALIBRATION[SHIPPED]  # --set
                              and s.split("=")[0] not in ("QuantPost.batch_nums", "Global.seed"))
                grid.setdefault((int(sets["QuantPost.batch_nums"]), extra), {})[int(sets["Global.seed"])] = run
        if grid:
            grids.append((row, grid))
    if not grids:
        return []
    seeds = sorted({seed for _, grid in grids for by_seed in grid.values() for seed in by_seed})
    lines = ["The config as shipped (or with the `--set` overrides named beside the batch count) over calibration "
             "draws (`--draws`: the runs `N calibration batches, seed S`): "
             "each `QuantPost.batch_nums`, and each `Global.seed`, which draws other calibration batches; change "
             "against fp32 in points, as `infer.py --int8` deploys the model.", "",
             "| task | calibration batches | " + " | ".join(f"seed {s}" for s in seeds) +
             " | mean | worst | wall s (mean) |", "|---|---|" + "---|" * (len(seeds) + 3)]
    for row, grid in grids:
        base = next(iter(row["runs"].values()))["before"]["headline"]
        for (n, extra), by_seed in sorted(grid.items()):
            changes = [100 * (run["metrics"]["headline"] - base) for run in by_seed.values()]
            size = next(iter(by_seed.values()))["quant_post"]["batch_size"]
            calibration = f"{n} × {size} rows" + "".join(f", `{e}`" for e in extra)
            lines.append(f"| {row['task']} {row['metric']} (fp32 {100 * base:.2f}) | {calibration} | " + " | ".join(
                f"{100 * (by_seed[s]['metrics']['headline'] - base):+.2f}" if s in by_seed else "–" for s in seeds)
                + f" | {sum(changes) / len(changes):+.2f} | {min(changes):+.2f} | "
                f"{sum(r['seconds'] for r in by_seed.values()) / len(by_seed):.0f} |")
    return lines + [""]


def padding_summary(results):
    """The README's short table of --padding: per task, how much padding moved the ranges."""
    lines = ["| task | linear-layer inputs × calibration batches whose largest \\|x\\| sat on padding | calibration "
             "range (algo avg), every position over real tokens: largest | per channel (smoothing's ranges), padding "
             "included over real tokens: median channel, largest channel (largest over the inputs) |", "|---|---|---|---|"]
    for row in results.get("padding", []):
        acts = row["activations"]
        lines.append(f"| {row['task']} | {sum(a['batches_set_by_padding'] for a in acts)} of "
                     f"{len(acts) * row['batches']} | {max(a['avg_all'] / a['avg_real'] for a in acts):.3f} | "
                     f"{max(a['channel_ratio_median'] for a in acts):.2f}, "
                     f"{max(a['channel_ratio_max'] for a in acts):.2f} |")
    return "\n".join(lines) + "\n\nEvery linear-layer input: [benchmarks/ptq_diagnostic/padding/RESULTS.md]" \
        "(benchmarks/ptq_diagnostic/padding/RESULTS.md).\n"


def draws_summary(results, folder="ptq_diagnostic/calibration_draws"):
    """The README's short table of --draws (folder: where they are, under benchmarks/)."""
    return "\n".join(draws_table(results["tasks"])) + f"\nEvery run: [benchmarks/{folder}/RESULTS.md](benchmarks/" \
        f"{folder}/RESULTS.md).\n"


def summary(results):
    """The README's short table: each calibration choice's change in dev metric, one column per task."""
    tasks = results["tasks"]
    names = [n for n in CALIBRATION if any(n in row["runs"] for row in tasks)]
    lines = ["| QuantPost calibration: one change from PaddleSlim's default (algo hist) | " + " | ".join(
                 f"{row['task']} {row['metric']} (fp32 {100 * next(iter(row['runs'].values()))['before']['headline']:.2f})"
                 for row in tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for name in names:
        cells = []
        for row in tasks:
            run = row["runs"].get(name)
            cells.append(cell(run["metrics"], run["before"]["headline"]) if run else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Dev metric after PTQ as `infer.py --int8` deploys it (change against fp32), one draw of calibration "
              "batches per row."]
    three = [(row, name) for row in tasks for name in SCORED_THREE_WAYS if name in row.get("openvino", {})]
    if three:
        lines += ["", f"| model | oneDNN int8 (`--int8`, on {results['machine']['cpu']}: "
                  f"{', '.join(results['machine']['isa']) or 'no AVX'}) | fake-quant graph (int8 summed in 32 bits) | "
                  "OpenVINO int8 (`--backend openvino --int8`) |", "|---|---|---|---|"]
        for row, name in three:
            base = next(iter(row["runs"].values()))["before"]["headline"]
            cells = [row["runs"][name]["metrics"], row["fake_quant"][name], row["openvino"][name]]
            lines.append(f"| {row['task']}, {name} | " + " | ".join(cell(m, base) for m in cells) + " |")
    return "\n".join(lines) + "\n\nEvery run, the layer groups quantized alone, wall time and memory: " \
        "[benchmarks/ptq_diagnostic/RESULTS.md](benchmarks/ptq_diagnostic/RESULTS.md).\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_benchmark_args(parser, OUT_DIR)
    parser.add_argument("--tasks", nargs="+", type=glue.task_arg, default=["sst-2", "sts-b"])
    parser.add_argument("--max_new_runs", type=int, default=None,
                        help="per task, run at most this many runs not finished before (default: all); "
                             "the report shows the finished ones")
    instead = parser.add_mutually_exclusive_group()
    instead.add_argument("--padding", action="store_true",
                        help="in place of the runs: whether padded positions set the ranges calibration and "
                             "smoothing read")
    instead.add_argument("--draws", action="store_true",
                        help="in place of the one-change runs: the shipped config with each --batch_nums and each "
                             "--seeds (other calibration batches)")
    parser.add_argument("--batch_nums", type=int, nargs="+", default=[40, 120],
                        help="with --draws: QuantPost.batch_nums values (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="with --draws: Global.seed values (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="with --draws: one more run.py override of the shipped config in every draw, e.g. "
                             "QuantPost.smooth_alpha=1.0 (repeatable; the table names it)")
    parser.add_argument("--bert_base", action="store_true",
                        help="also run PTQ of a BERT-base-sized model (random weights) for its peak memory")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def measure(results, save):
        results["tasks"] = []
        if args.bert_base:  # first: one run, and the memory bound is a goal of its own
            memory = bert_base_memory(args)
            quant_post = memory["quant_post"]
            results["bert_base_memory"] = {**memory, "calibration": f"{quant_post['batch_nums']} batches of "
                                           f"{quant_post['batch_size']}, algo {quant_post['algo']}, smooth_alpha "
                                           f"{quant_post.get('smooth_alpha')}"}
            save()

        def save_row(row):
            results["tasks"] = [r for r in results["tasks"] if r["task"] != row["task"]] + [row]
            save()

        for task in args.tasks:
            if args.padding:
                results["padding"] = results.get("padding", []) + [
                    padding_ranges(task, reproduce.prepare_base(task, args),
                                   os.path.join(common.ROOT, "configs", f"{task}_ptq.yaml"), args.data_dir)]
                save()
            else:
                run_task(task, args, save_row)

    return common.benchmark_main(args, "benchmarks/ptq_diagnostic.py", argv, measure, render)


if __name__ == "__main__":
    cli.cli(main)
