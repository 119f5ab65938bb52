"""Latency benchmark: Paddle Inference fp32, the compressed models through infer.py, and the peers.

    python benchmarks/latency/bench_latency.py --data_dir $GLUE_DIR \\
        --minilm_dir ./my-bert-sst2 \\
        --variant "minilm:prune + distill, PTQ=./output/sst2_prune_ptq"

Side by side, on one machine and in one run, at batch 1 and 32, sequence length 128:
- Paddle Inference fp32 on the model convert.py writes (trace), through `infer.py --perf`;
- the compressed variants through `infer.py --perf --int8`: a PTQ model this script makes with
  run.py, plus any `--variant MODEL:NAME=DIR` (for example run.py outputs); the PTQ model also
  runs as-is (fake-quant ops) and with `--cpu_int8_ops all`, the two slow or wrong ways;
- the same Paddle models through `infer.py --backend openvino` (fp32, and `--int8`);
- the peers on the same HF model: PyTorch fp32 and dynamic int8 (`quantize_dynamic`, Linear
  layers), ONNX Runtime fp32 and dynamic int8 (`torch.onnx.export`, ORT's BERT graph optimizer,
  `quantize_dynamic` QInt8 per channel) and static int8 (QDQ, MatMul weights per channel,
  calibrated on training sentences), OpenVINO on the exported ONNX model with an f32 precision
  hint, with its default hints (bf16 on AMX CPUs), and after NNCF post-training quantization
  (`model_type=TRANSFORMER`, calibrated on training sentences). Calibration never sees dev data.
Models: (a) MiniLM (6 layers, hidden 384): `--minilm_dir`, a fine-tuned classifier (then every
row also gets its SST-2 dev accuracy), default the packaged pretrained encoder with a fresh head;
(b) a BERT-base-shaped model (12 layers, hidden 768) with random weights. Every measurement runs
in its own process with --cpu_threads threads, so no framework's thread pool disturbs another.
Writes results.json and RESULTS.md next to this file. Finished steps in --work_dir are reused.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402
import peer  # noqa: E402  (benchmarks/latency/peer.py)

ROOT = common.ROOT
TASK, SEQ = "sst-2", peer.SEQ  # the latency benchmark's fine-tuned models are SST-2 classifiers
PEERS, CALIBRATION_ROWS = peer.PEERS, peer.CALIBRATION_ROWS
# "Best peer": the fastest peer whose dev accuracy is within this many points of Paddle fp32.
PEER_ACCURACY_POINTS = 1.0
BERT_BASE = common.BERT_BASE


def infer_row(model_dir, flags, args, work_dir):
    return common.run_infer(TASK, model_dir, flags + ["--max_seq_length", str(SEQ), "--cpu_threads", str(args.cpu_threads),
                                                      "--data_dir", args.data_dir], os.path.join(work_dir, "infer"))


# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------
def hf_classifier(name, source, work_dir):
    """An HF sequence classifier for the case: a fine-tuned one as is, else one saved with a fresh head."""
    import convert

    config = convert.load_bert_config(source) if source else None
    if config is not None and any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
        return source, True
    path = os.path.join(work_dir, "hf")
    if os.path.isfile(os.path.join(path, "config.json")):
        return path, False
    if name == "bert-base":  # random weights: latency does not depend on them
        common.save_random_bert_base(path)
    else:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).save_pretrained(path)
        AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path, False


def script(argv):
    """One of the repository's scripts in its own process (memory comes back when it ends)."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, argv[0])] + argv[1:], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")


def paddle_models(case, args):
    """convert.py's fp32 model and run.py's PTQ model of the case (made once, then reused)."""
    import yaml

    fp32 = os.path.join(case["work_dir"], "paddle-fp32")
    if not os.path.isfile(os.path.join(fp32, "model.pdmodel")):
        script(["convert.py", "--model_name_or_path", case["hf_dir"], "--method", "trace",
                "--max_seq_length", str(SEQ), "--save_dir", fp32, "--overwrite"])
    # a slice of SST-2 for run.py: PTQ calibrates on 10 train batches, and its own before/after
    # evaluation of a fake-quant BERT-base on the whole dev set would take longer than the rest
    subset = os.path.join(args.work_dir, "glue-subset")
    if not os.path.isfile(os.path.join(subset, "SST-2", "dev.tsv")):
        os.makedirs(os.path.join(subset, "SST-2"), exist_ok=True)
        for split, rows in (("train", 640), ("dev", 64)):
            with open(glue.split_path(args.data_dir, TASK, split)) as f:
                lines = f.readlines()[: rows + 1]  # header + rows
            with open(os.path.join(subset, "SST-2", f"{split}.tsv"), "w") as f:
                f.writelines(lines)
    ptq = os.path.join(case["work_dir"], "paddle-ptq")
    if not os.path.isfile(os.path.join(ptq, "model.pdmodel")):
        config = os.path.join(case["work_dir"], "ptq.yaml")
        with open(config, "w") as f:
            yaml.safe_dump({"Global": {"model_dir": fp32, "task_name": TASK, "batch_size": 8,
                                       "max_seq_length": SEQ, "data_dir": subset},
                            "QuantPost": {"quantize_op_types": ["matmul", "matmul_v2"], "onnx_format": True,
                                          "batch_size": 32, "batch_nums": 10}}, f)
        script(["run.py", "--config_path", config, "--save_dir", ptq, "--overwrite"])
    return fp32, ptq


def parse_variant(value):
    model, sep, rest = value.partition(":")
    name, sep2, path = rest.partition("=")
    if not (sep and sep2 and model in ("minilm", "bert-base") and os.path.isfile(os.path.join(path, "model.pdmodel"))):
        raise argparse.ArgumentTypeError(f"--variant {value!r}: expected MODEL:NAME=DIR with MODEL minilm or "
                                         "bert-base and DIR holding model.pdmodel (a run.py output)")
    return model, name, os.path.abspath(path)


# ----------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------
def is_peer(row):
    return row.get("peer", row["name"] in PEERS)  # results written before the key existed


def best_peer(rows, batch):
    """The fastest peer whose dev accuracy (where measured) is within PEER_ACCURACY_POINTS of Paddle fp32."""
    base = next(r for r in rows if r["name"] == "Paddle fp32")
    fair = [r for r in rows if is_peer(r) and ("metrics" not in base or "metrics" not in r or
                                                100 * abs(r["metrics"]["acc"] - base["metrics"]["acc"])
                                                <= PEER_ACCURACY_POINTS)]
    return min(fair, key=lambda r: r["perf"][batch]["p50_ms"])


def add_ratios(rows, batch_sizes):
    for b in map(str, batch_sizes):
        base = next(r for r in rows if r["name"] == "Paddle fp32")["perf"][b]["p50_ms"]
        best = best_peer(rows, b)["perf"][b]["p50_ms"]
        for r in rows:
            p50 = r["perf"][b]["p50_ms"]
            r["perf"][b]["speedup_vs_paddle_fp32"] = base / p50
            r["perf"][b]["speedup_vs_best_peer"] = best / p50


def goal_lines(case, batches):
    """Each compressed int8 row of this project against the goal: faster than every peer at every
    batch size and (fine-tuned model) SST-2 dev accuracy at most 0.5 point below the most accurate peer."""
    rows = case["rows"]
    peers = [r for r in rows if is_peer(r)]
    lines = ["Best peer (the fastest within 1 point of Paddle fp32's accuracy): "
             + ", ".join(f"batch {b}: {best_peer(rows, b)['name']}" for b in batches) + ".", "",
             "Goal: faster than every peer at batch " + " and ".join(batches)
             + (", SST-2 dev accuracy at most 0.5 point below the most accurate peer:" if case["accuracy"] else ":")]
    for r in rows:
        if is_peer(r) or r["precision"] != "int8" or "all ops" in r["name"]:
            continue
        checks, parts = [], []
        for b in batches:
            fastest = min(p["perf"][b]["p50_ms"] for p in peers)
            checks.append(r["perf"][b]["p50_ms"] < fastest)
            parts.append(f"b{b} {fastest / r['perf'][b]['p50_ms']:.2f}× the fastest peer")
        if case["accuracy"]:
            top = max(p["metrics"]["acc"] for p in peers if "metrics" in p)
            delta = 100 * (r["metrics"]["acc"] - top)
            checks.append(delta >= -0.5)
            parts.append(f"{delta:+.2f} points against the most accurate peer")
        lines.append(f"- {r['name']}: {'met' if all(checks) else 'not met'} ({', '.join(parts)})")
    return lines


def render(results):
    s = results["settings"]
    lines = ["# Latency benchmark (CPU)", "", common.provenance(results), "",
             f"Sequence length {s['seq']}, {s['threads']} threads, every row in its own process; p50 of "
             f"{' / '.join(map(str, s['steps']))} timed batches (batch {' / '.join(map(str, s['batch_sizes']))}) "
             f"after {s['warmup']} warm-up ones (`infer.measure`). × fp32 and "
             "× best peer: p50 of Paddle fp32 (or of the fastest peer) divided by the row's p50, same batch size.",
             ""]
    bs = [str(b) for b in s["batch_sizes"]]
    for case in results["models"]:
        lines += [f"## {case['title']}", ""]
        acc = case["accuracy"]
        head = ["what", "backend", "precision"] + (["SST-2 dev acc"] if acc else [])
        for b in bs:
            head += [f"b{b} p50 ms", f"b{b} × fp32", f"b{b} × best peer"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in case["rows"]:
            cells = [r["name"], r["backend"], r["precision"]]
            if acc:
                cells.append(f"{r['metrics']['acc']:.4f}" if r.get("metrics") else "–")
            for b in bs:
                p = r["perf"][b]
                cells += [f"{p['p50_ms']:.1f}", f"{p['speedup_vs_paddle_fp32']:.2f}", f"{p['speedup_vs_best_peer']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + goal_lines(case, bs) + [""]
    lines += ["Rows: `Paddle fp32` is convert.py's model; `PTQ` is run.py's post-training quantization "
              "(QuantPost, 10 batches of 32) of it; `as-is` runs its fake-quant ops in fp32; "
              "`int8 all ops` is `infer.py --int8 --cpu_int8_ops all`; the other int8 rows of this project are "
              "`infer.py --int8` (oneDNN int8 linear layers), or with `, OpenVINO` `infer.py --backend openvino "
              "--int8`. The peers run the HF model the Paddle model was converted from; `openvino default` "
              "leaves OpenVINO's precision hint alone (bf16 on CPUs with AMX or AVX-512 BF16, else f32); the "
              f"static int8 peers calibrate on {CALIBRATION_ROWS} SST-2 training sentences.", ""]
    return "\n".join(lines)


def summary(results):
    """The README's short table: per model and batch size, Paddle fp32, this project's fastest usable
    row and the fastest peer (usable: within 1 point of Paddle fp32's accuracy, where measured)."""
    m = results["machine"]
    lines = [f"{m['cpu']} ({', '.join(m['isa'])}), {results['settings']['threads']} threads, sequence length "
             f"{results['settings']['seq']}, p50 ms per batch (× Paddle fp32); rows more than 1 point of accuracy below "
             "Paddle fp32 left out:", "",
             "| model | batch | Paddle fp32 | fastest of this project | fastest peer |", "|---|---|---|---|---|"]
    for case in results["models"]:
        rows = case["rows"]
        base = next(r for r in rows if r["name"] == "Paddle fp32")
        usable = [r for r in rows if "all ops" not in r["name"] and "as-is" not in r["name"] and not (
            case["accuracy"] and r.get("metrics") and r["metrics"]["acc"] < base["metrics"]["acc"] - 0.01)]
        model = case["title"].split(" (")[0]
        for b in map(str, results["settings"]["batch_sizes"]):
            def cell(r):
                acc = f", acc {100 * r['metrics']['acc']:.2f}" if case["accuracy"] and r.get("metrics") else ""
                return f"{r['name']}: {r['perf'][b]['p50_ms']:.1f} ({r['perf'][b]['speedup_vs_paddle_fp32']:.2f}×{acc})"
            ours = min((r for r in usable if not is_peer(r)), key=lambda r: r["perf"][b]["p50_ms"])
            peers = [r for r in usable if is_peer(r)]
            peer = cell(min(peers, key=lambda r: r["perf"][b]["p50_ms"])) if peers else "–"
            lines.append(f"| {model} | {b} | {cell(base)} | {cell(ours)} | {peer} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    """SST-2 dev accuracy against latency at the largest batch, one point per row (fine-tuned MiniLM only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = next((c for c in results["models"] if c["accuracy"]), None)
    if case is None:
        return None
    batch = str(max(results["settings"]["batch_sizes"]))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    rows = [r for r in case["rows"] if "metrics" in r]
    colors = plt.get_cmap("tab10")
    for i, r in enumerate(rows):
        peer = is_peer(r)
        ax.scatter(r["perf"][batch]["p50_ms"], 100 * r["metrics"]["acc"], s=60, color=colors(i % 10),
                   marker="s" if peer else "o", label=f"{r['name']} ({'peer' if peer else 'Paddle'})")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, ms per batch of {batch} (sequence 128, {results['settings']['threads']} threads, "
                  "log scale)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.set_title(f"{case['title']}\n{results['machine']['cpu']}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=glue.resolve_data_dir(), help="GLUE folder (default: $GLUE_DIR)")
    parser.add_argument("--minilm_dir", default=None,
                        help="a fine-tuned MiniLM SST-2 classifier (default: the packaged encoder, fresh head)")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="MODEL:NAME=DIR, a compressed model of MODEL (minilm or bert-base) to run with --int8")
    parser.add_argument("--models", nargs="+", choices=("minilm", "bert-base"), default=["minilm", "bert-base"])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--perf_steps", type=int, nargs="+", default=[100, 20],
                        help="timed batches per measurement, one per --batch_sizes entry")
    parser.add_argument("--perf_warmup_steps", type=int, default=5)
    parser.add_argument("--cpu_threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "benchmarks", "work", "latency"))
    parser.add_argument("--save_dir", default=HERE, help="where results.json and RESULTS.md go")
    parser.add_argument("--render_only", action="store_true", help="rebuild RESULTS.md and the plot from results.json")
    args = parser.parse_args(argv)
    if len(args.perf_steps) != len(args.batch_sizes):
        parser.error(f"--perf_steps needs one count per batch size ({len(args.batch_sizes)})")
    if not args.data_dir and not args.render_only:
        parser.error("pass --data_dir (a GLUE folder with SST-2/dev.tsv) or set GLUE_DIR")
    args.data_dir = args.data_dir and os.path.abspath(args.data_dir)
    return args


def paddle_rows(name, fp32, ptq, args):
    """(row name, model folder, infer.py flags) of every Paddle row of one model."""
    openvino = ["--backend", "openvino"]
    rows = [("Paddle fp32", fp32, []), ("Paddle fp32, OpenVINO", fp32, openvino)]
    if name == "minilm":  # the two ways a quantized model is slow or wrong (hours on BERT-base)
        rows += [("PTQ, as-is (fake-quant ops)", ptq, []), ("PTQ, int8 all ops", ptq, ["--int8", "--cpu_int8_ops", "all"])]
    compressed = [("PTQ", ptq)] + [(vname, path) for model, vname, path in args.variant if model == name]
    for vname, path in compressed:
        rows += [(vname, path, ["--int8"]), (f"{vname}, OpenVINO", path, openvino + ["--int8"])]
    return rows


def measure_case(name, args):
    """Every row of one model (minilm or bert-base) at every batch size; finished measurements are kept in
    <work_dir>/<model>/measurements.json, so an interrupted run resumes."""
    from tqdm import tqdm

    work_dir = os.path.join(args.work_dir, name)
    os.makedirs(work_dir, exist_ok=True)
    source = (args.minilm_dir or common.packaged_model_dir()) if name == "minilm" else None
    hf_dir, finetuned = hf_classifier(name, source, work_dir)
    case = {"name": name, "hf_dir": hf_dir, "work_dir": work_dir, "onnx_dir": os.path.join(work_dir, "onnx")}
    fp32, ptq = paddle_models(case, args)
    jobs = [(r, b, steps) for r in paddle_rows(name, fp32, ptq, args) + [(p, None, None) for p in PEERS]
            for b, steps in zip(args.batch_sizes, args.perf_steps)]
    cache_path = os.path.join(work_dir, "measurements.json")
    cache = {}
    if os.path.isfile(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    rows = []
    for (row_name, path, extra), b, steps in tqdm(jobs, desc=f"latency {name}"):
        first = b == args.batch_sizes[0]
        key = f"{row_name} | batch {b} | {steps} steps"
        if key in cache:  # measured by an earlier, interrupted run
            row, m = cache[key]
        elif path is None:
            m = common.run_peer(row_name, case["hf_dir"], case["onnx_dir"], TASK, b, steps, args.perf_warmup_steps,
                                args.cpu_threads, args.data_dir, accuracy=finetuned and first)
            row = {"backend": row_name.split()[0], "precision": row_name.split(" ", 1)[1], "peer": True}
        else:
            m = infer_row(path, extra + ["--batch_size", str(b), "--perf", "--perf_steps", str(steps),
                                         "--perf_warmup_steps", str(args.perf_warmup_steps)], args, work_dir)
            row = {"backend": m["backend"], "precision": m["precision"], "model_dir": path,
                   "infer_flags": extra, "peer": False}
            if finetuned and first:
                m["metrics"] = infer_row(path, extra + ["--batch_size", "32"], args, work_dir)["metrics"]
        cache[key] = [row, m]
        cli.write_json(cache_path, cache)
        if first:
            rows.append({"name": row_name, **row, "perf": {}})
            if "metrics" in m:
                rows[-1]["metrics"] = m.pop("metrics")
        rows[-1]["perf"][str(b)] = m
    add_ratios(rows, args.batch_sizes)
    shape = f"{BERT_BASE['num_hidden_layers']} layers, hidden {BERT_BASE['hidden_size']}, random weights"
    title = ("MiniLM (all-MiniLM-L6-v2: 6 layers, hidden 384" + (", fine-tuned on SST-2)" if finetuned
                                                                 else ", fresh head)")
             if name == "minilm" else f"BERT-base shape ({shape})")
    return {"name": name, "title": title, "accuracy": finetuned, "hf_dir": hf_dir, "rows": rows}


def main(argv=None):
    args = parse_args(argv)
    if args.render_only:
        with open(os.path.join(args.save_dir, "results.json")) as f:
            return write_report(json.load(f), args.save_dir)
    cli.setup_logging()
    start = time.perf_counter()
    cases = [measure_case(name, args) for name in args.models]

    import nncf
    import onnxruntime
    import openvino

    results = {**common.new_results("benchmarks/latency/bench_latency.py", argv),
               "settings": {"seq": SEQ, "threads": args.cpu_threads, "steps": args.perf_steps,
                            "warmup": args.perf_warmup_steps, "batch_sizes": args.batch_sizes},
               "wall_seconds": round(time.perf_counter() - start, 1), "models": cases}
    results["versions"].update(onnxruntime=onnxruntime.__version__, openvino=openvino.__version__.split("-")[0],
                               nncf=nncf.__version__)
    os.makedirs(args.save_dir, exist_ok=True)
    common.write_results(os.path.join(args.save_dir, "results.json"), results, args.data_dir)  # paths relative
    return write_report(results, args.save_dir)


def write_report(results, out_dir):
    """RESULTS.md and the plot from results."""
    text = render(results)
    if plot(results, os.path.join(out_dir, "accuracy_vs_latency.png")):
        text += "\n![SST-2 dev accuracy against latency](accuracy_vs_latency.png)\n"
    with open(os.path.join(out_dir, "RESULTS.md"), "w") as f:
        f.write(text)
    print(text)
    return results


if __name__ == "__main__":
    cli.cli(main)
