"""Where a batch's time goes: CPU time per op type of each model of one task, as `infer.py` deploys it.

    python benchmarks/op_profile.py --task sts-b        # the models benchmarks/reproduce.py made for it
    python benchmarks/op_profile.py --render_only

The models are the ones benchmarks/reproduce.py keeps in its work folder for the task: the base
(fp32) and each compressed model it finished (quantized ones run as under `infer.py --int8`:
oneDNN int8 linear layers, the rest of the graph in fp32). Each model runs in its own process on
one constant batch (batch 32 at length 128 by default, every token real), after warm-up runs:
first --runs timed runs (median wall ms), then --runs more under paddle.profiler, whose operator
events give the ms per batch of each op type after Paddle's fusions (fc, fused_matmul, ...). Time
it with nothing else running on the machine. Results: benchmarks/op_profile/<task>/results.json
and RESULTS.md.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402
import reproduce  # noqa: E402

WARMUP = 3


def model_dirs(work_dir, task):
    """{model key: folder} of the models reproduce.py finished for the task: base, then its strategies."""
    folders = {"base": os.path.join(work_dir, task, "paddle-fp32")}
    folders.update({key: os.path.join(work_dir, task, key) for key in reproduce.STRATEGIES})
    return {k: v for k, v in folders.items() if os.path.isfile(os.path.join(v, "model.pdmodel"))}


def profile(model_dir, batch, seq, runs, threads):
    """One model, in this process: {"precision", "wall_ms" (median of runs), "ops": {op type: ms per batch}}."""
    import numpy as np
    import paddle.profiler as profiler

    import predictors

    prefix = os.path.join(model_dir, "model")
    config, path = predictors.deployed_cpu_config(predictors.read_model(prefix + ".pdmodel", prefix + ".pdiparams"),
                                                  threads)
    predictor = predictors.create_predictor(config, model_dir)
    # one token id everywhere (3: in any BERT vocabulary), every token real: the work depends on neither
    feeds = {"input_ids": np.full((batch, seq), 3, "int64"), "attention_mask": np.ones((batch, seq), "int64"),
             "token_type_ids": np.zeros((batch, seq), "int64")}
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(feeds[name])
    for _ in range(WARMUP):
        predictor.run()
    wall = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.run()
        wall.append(1000 * (time.perf_counter() - start))
    recorder = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)  # no ./profiler_log
    recorder.start()
    for _ in range(runs):
        predictor.run()
    recorder.stop()
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.json")
        recorder.export(trace, format="json")
        with open(trace) as f:
            events = json.load(f)["traceEvents"]
    ops = collections.Counter()
    for event in events:
        if event.get("cat") == "Operator":  # name "fc[123.4 us]", dur in microseconds
            ops[event["name"].split("[")[0]] += event["dur"] / 1000 / runs
    return {"precision": path["precision"], "wall_ms": round(float(np.median(wall)), 2),
            "ops": {k: round(v, 3) for k, v in ops.most_common()}}


def profile_in_process(model_dir, args):
    """profile() in a process of its own, so that no other model's thread pool or cache is beside it."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--profile_one", model_dir,
                          "--batch_size", str(args.batch_size), "--max_seq_length", str(args.max_seq_length),
                          "--runs", str(args.runs),
                          "--cpu_threads", str(args.cpu_threads)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"profiling {model_dir} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(results):
    labels = {**reproduce.LABELS, "base": "base"}
    models = results["models"]
    keys = list(models)
    order = sorted({op for m in models.values() for op in m["ops"]}, key=lambda op: -max(
        m["ops"].get(op, 0) for m in models.values()))
    s = results["settings"]
    lines = [f"# Where the time goes: {s['task']}, batch {s['batch_size']} at length {s['max_seq_length']}", "",
             common.provenance(results), "",
             f"CPU ms per batch by op type after Paddle's fusions (paddle.profiler, {s['runs']} batches, "
             f"{s['cpu_threads']} threads), each model as `infer.py` deploys it (quantized: `--int8`, oneDNN "
             "int8 fc, everything else fp32). The wall row is the median of as many batches, timed without the "
             "profiler.", "",
             "| op type | " + " | ".join(f"{labels[k]} ({models[k]['precision']})" for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for op in order:
        lines.append(f"| {op} | " + " | ".join(
            f"{models[k]['ops'][op]:.1f}" if op in models[k]["ops"] else "–" for k in keys) + " |")
    lines.append("| **sum of ops** | " + " | ".join(f"{sum(models[k]['ops'].values()):.1f}" for k in keys) + " |")
    base = models.get("base", {}).get("wall_ms")
    lines.append("| **wall** | " + " | ".join(
        f"{models[k]['wall_ms']:.1f}" + (f" ({base / models[k]['wall_ms']:.2f}×)" if base else "") for k in keys) + " |")
    if any(m["precision"] == "int8" for m in models.values()):
        lines += ["", "What the int8 models run besides their fc ops: `quantize` (the input of each group of int8 "
                  "layers, from fp32) and `elementwise_mul` (smooth.py's division of that input, where the model "
                  "was smoothed). The attention matmuls (`fused_matmul`), softmax and LayerNorm stay fp32 in every "
                  "model."]
    lines += ceiling(models)
    return "\n".join(lines) + "\n"


def ceiling(models):
    """Per int8 model: how much faster its fc ops are than the base's, and the model's speed-up were every
    other op as fast as in the base (no quantize, no smoothing, nothing else slower): what int8 linear
    layers alone can give on this CPU."""
    base = models.get("base")
    int8 = [k for k, m in models.items() if m["precision"] == "int8" and m["ops"].get("fc")]
    if not base or not base["ops"].get("fc") or not int8:
        return []
    labels = {**reproduce.LABELS, "base": "base"}
    total, fc = sum(base["ops"].values()), base["ops"]["fc"]
    lines = ["", f"The ceiling of int8 linear layers: the base spends {fc:.1f} of its {total:.1f} ms in fc. Were "
             "every other op of an int8 model as fast as the base's, the model would run at the speed-up in the "
             "last column.", "", "| model | fc ms, int8 | fc speed-up | speed-up ceiling |", "|---|---|---|---|"]
    for k in int8:
        mine = models[k]["ops"]["fc"]
        lines.append(f"| {labels[k]} | {mine:.1f} | {fc / mine:.2f}× | {total / (total - fc + mine):.2f}× |")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_benchmark_args(parser, os.path.join(HERE, "op_profile"))
    parser.add_argument("--task", type=glue.task_arg, default="sts-b", help="whose models (reproduce.py's work folder) to profile")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=reproduce.SEQ, help="the models' sequence length")
    parser.add_argument("--runs", type=int, default=20, help="batches timed, and as many profiled")
    parser.add_argument("--cpu_threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile_one", help=argparse.SUPPRESS)  # internal: one model, JSON to stdout
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.profile_one:
        print(json.dumps(profile(args.profile_one, args.batch_size, args.max_seq_length, args.runs, args.cpu_threads)))
        return None
    if args.save_dir == os.path.join(HERE, "op_profile"):
        args.save_dir = os.path.join(args.save_dir, args.task)

    def measure(results, save):
        from tqdm import tqdm

        folders = model_dirs(args.work_dir, args.task)
        if not folders:
            raise cli.InputError(f"no models of {args.task} in {args.work_dir}: run benchmarks/reproduce.py "
                                 f"--tasks {args.task} first")
        results.update(settings={"task": args.task, "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
                                 "runs": args.runs, "cpu_threads": args.cpu_threads}, models={})
        for key, folder in tqdm(folders.items(), desc="models"):
            results["models"][key] = profile_in_process(folder, args)
            save()

    return common.benchmark_main(args, "benchmarks/op_profile.py", argv, measure, render)


if __name__ == "__main__":
    cli.cli(main)
