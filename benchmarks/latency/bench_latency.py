"""Latency benchmark: Paddle Inference fp32, the compressed models through infer.py, and the peers.

    python benchmarks/latency/bench_latency.py --data_dir ../shared/glue \\
        --minilm_dir benchmarks/work/minilm-sst2 \\
        --variant "minilm:prune + distill, PTQ=benchmarks/work/prune-ptq-sst2"

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
in its own process with --threads threads, so no framework's thread pool disturbs another.
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
import glue  # noqa: E402

ROOT = common.ROOT
TASK = "sst-2"
SEQ = 128
PEERS = ("pytorch fp32", "pytorch dynamic int8", "onnxruntime fp32", "onnxruntime dynamic int8",
         "onnxruntime static int8", "openvino fp32", "openvino default", "openvino nncf int8")
CALIBRATION_ROWS = 300  # training sentences the static-int8 peers calibrate on (seeded sample)
# "Best peer": the fastest peer whose dev accuracy is within this many points of Paddle fp32.
PEER_ACCURACY_POINTS = 1.0
BERT_BASE = common.BERT_BASE


# ----------------------------------------------------------------------------------------
# Peers: one measurement in a worker process
# ----------------------------------------------------------------------------------------
def peer_predict(kind, hf_dir, work_dir, threads, calibration):
    """predict(feeds) -> logits for one peer backend on the HF model in hf_dir.

    calibration: feeds dicts of training sentences (batch 1), for the static int8 peers.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()  # default (SDPA) attention
    if kind.startswith("pytorch"):
        if "int8" in kind:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

        def predict(feeds):
            with torch.no_grad():
                return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        return predict
    if kind.startswith("openvino"):
        return openvino_peer(kind, export_onnx(model, work_dir, int8=False, fused=False), work_dir, threads,
                             calibration)

    import onnxruntime as ort

    if "static" in kind:
        path = static_int8_onnx(export_onnx(model, work_dir, int8=False, fused=False), work_dir, calibration)
    else:
        path = export_onnx(model, work_dir, int8="int8" in kind)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda feeds: session.run(None, {n: feeds[n] for n in names})[0]


def openvino_peer(kind, onnx_path, work_dir, threads, calibration):
    """OpenVINO on the exported ONNX model: f32 hint, default hints, or NNCF int8 (cached as IR)."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if kind == "openvino fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if kind == "openvino nncf int8":
        ir = os.path.join(work_dir, "nncf-int8.xml")
        if not os.path.isfile(ir):
            import nncf

            quantized = nncf.quantize(core.read_model(onnx_path), nncf.Dataset(calibration),
                                      subset_size=len(calibration), model_type=nncf.ModelType.TRANSFORMER)
            ov.save_model(quantized, ir)
        model = core.read_model(ir)
    else:
        model = core.read_model(onnx_path)
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    names = [port.get_any_name() for port in compiled.inputs]
    return lambda feeds: np.array(request.infer({n: feeds[n] for n in names})[0])


def static_int8_onnx(fp32, work_dir, calibration):
    """ONNX Runtime static int8: QDQ, MatMul weights per channel, activations calibrated on training sentences."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    path = os.path.join(work_dir, "model-static-int8.onnx")
    if not os.path.isfile(path):
        class Reader(CalibrationDataReader):
            def __init__(self):
                self.rows = iter(calibration)

            def get_next(self):
                return next(self.rows, None)

        quantize_static(fp32, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=["MatMul"], activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    return path


def export_onnx(model, work_dir, int8, fused=True):
    """model.onnx (TorchScript exporter); with `fused`, ORT's BERT fusions, then dynamic int8 if asked."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    import convert

    fp32 = os.path.join(work_dir, "model-opt.onnx")
    if not os.path.isfile(fp32):
        raw = os.path.join(work_dir, "model.onnx")
        example = tuple(torch.ones((1, SEQ), dtype=torch.int64) for _ in convert.INPUT_NAMES)
        torch.onnx.export(convert.logits_module(model), example, raw, input_names=list(convert.INPUT_NAMES),
                          output_names=["logits"], opset_version=14, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in convert.INPUT_NAMES})
        config = model.config
        optimize_model(raw, model_type="bert", num_heads=config.num_attention_heads,
                       hidden_size=config.hidden_size).save_model_to_file(fp32)
    if not fused:
        return os.path.join(work_dir, "model.onnx")
    if not int8:
        return fp32
    path = os.path.join(work_dir, "model-opt-int8.onnx")
    if not os.path.isfile(path):
        # DefaultTensorType: ORT's shape inference does not type the outputs of its own fused
        # (com.microsoft) ops, and quantize_dynamic refuses untyped weights without it
        quantize_dynamic(fp32, path, weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return path


def worker(args):
    """--worker: measure one peer at one batch size (and its dev accuracy); print JSON."""
    import infer
    from paddlenlp.transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.hf_dir)
    collate = glue.Collator(list(glue.INPUT_KEYS), tokenizer.pad_token_id, tokenizer.pad_token_type_id, SEQ)
    train = glue.sample(glue.load_split(TASK, "train", args.data_dir), CALIBRATION_ROWS, seed=0)
    calibration = list(glue.batches(glue.convert_examples(train, tokenizer, SEQ, TASK, desc="tokenize calibration"),
                                    1, collate.collate_feeds))
    predict = peer_predict(args.worker, args.hf_dir, args.onnx_dir, args.threads, calibration)
    dev = glue.load_dev_splits(TASK, args.data_dir)
    features = {s: glue.convert_examples(e, tokenizer, SEQ, TASK, desc=f"tokenize {s}") for s, e in dev.items()}
    batches = [b for b in glue.batches(features["dev"], args.batch_size, collate.collate_feeds)
               if len(b["input_ids"]) == args.batch_size][:8]
    result = infer.measure(predict, batches, args.warmup, args.steps[0])
    if args.accuracy:
        result["metrics"] = glue.evaluate(predict, features, TASK, 32, collate)
    print(json.dumps(result))


def run_peer(kind, case, batch_size, steps, args, accuracy):
    os.makedirs(case["onnx_dir"], exist_ok=True)
    out = subprocess.run([sys.executable, __file__, "--worker", kind, "--hf_dir", case["hf_dir"],
                          "--onnx_dir", case["onnx_dir"], "--batch_size", str(batch_size), "--steps", str(steps),
                          "--warmup", str(args.warmup), "--threads", str(args.threads),
                          "--data_dir", args.data_dir] + (["--accuracy"] if accuracy else []),
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{kind} at batch {batch_size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def infer_row(model_dir, flags, args, work_dir):
    return common.run_infer(TASK, model_dir, flags + ["--max_seq_length", str(SEQ), "--cpu_threads", str(args.threads),
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
    m, s = results["machine"], results["settings"]
    lines = ["# Latency benchmark (CPU)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), Python {m['python']}. "
             "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", "",
             f"Command: `{results['command']}`", "",
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
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 20],
                        help="timed batches per measurement, one per --batch_sizes entry")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "benchmarks", "work", "latency"))
    parser.add_argument("--out_dir", default=HERE, help="where results.json and RESULTS.md go")
    parser.add_argument("--render_only", action="store_true", help="rebuild RESULTS.md and the plot from results.json")
    # internal: one peer measurement in a fresh process
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--hf_dir", help=argparse.SUPPRESS)
    parser.add_argument("--onnx_dir", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--accuracy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker and len(args.steps) != len(args.batch_sizes):
        parser.error(f"--steps needs one count per batch size ({len(args.batch_sizes)})")
    if not args.data_dir and not args.render_only:
        parser.error("pass --data_dir (a GLUE folder with SST-2/dev.tsv) or set GLUE_DIR")
    args.data_dir = args.data_dir and os.path.abspath(args.data_dir)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if args.render_only:
        with open(os.path.join(args.out_dir, "results.json")) as f:
            return write_report(json.load(f), args.out_dir)
    glue.setup_logging()
    from tqdm import tqdm

    import convert

    start = time.perf_counter()
    cases = []
    for name in args.models:
        work_dir = os.path.join(args.work_dir, name)
        os.makedirs(work_dir, exist_ok=True)
        source = (args.minilm_dir or common.packaged_model_dir()) if name == "minilm" else None
        hf_dir, finetuned = hf_classifier(name, source, work_dir)
        case = {"name": name, "hf_dir": hf_dir, "work_dir": work_dir, "onnx_dir": os.path.join(work_dir, "onnx")}
        fp32, ptq = paddle_models(case, args)
        openvino = ["--backend", "openvino"]
        paddle_rows = [("Paddle fp32", fp32, []), ("Paddle fp32, OpenVINO", fp32, openvino)]
        if name == "minilm":  # the two ways a quantized model is slow or wrong (hours on BERT-base)
            paddle_rows += [("PTQ, as-is (fake-quant ops)", ptq, []),
                            ("PTQ, int8 all ops", ptq, ["--int8", "--cpu_int8_ops", "all"])]
        compressed = [("PTQ", ptq)] + [(vname, path) for model, vname, path in args.variant if model == name]
        for vname, path in compressed:
            paddle_rows += [(vname, path, ["--int8"]), (f"{vname}, OpenVINO", path, openvino + ["--int8"])]
        rows = []
        jobs = [(r, b, steps) for r in paddle_rows + [(p, None, None) for p in PEERS]
                for b, steps in zip(args.batch_sizes, args.steps)]
        cache_path = os.path.join(work_dir, "measurements.json")
        cache = {}
        if os.path.isfile(cache_path):
            with open(cache_path) as f:
                cache = json.load(f)
        for (row_name, path, extra), b, steps in tqdm(jobs, desc=f"latency {name}"):
            first = b == args.batch_sizes[0]
            key = f"{row_name} | batch {b} | {steps} steps"
            if key in cache:  # measured by an earlier, interrupted run
                row, m = cache[key]
            elif path is None:
                m = run_peer(row_name, case, b, steps, args, accuracy=finetuned and first)
                row = {"backend": row_name.split()[0], "precision": row_name.split(" ", 1)[1], "peer": True}
            else:
                m = infer_row(path, extra + ["--batch_size", str(b), "--perf", "--perf_steps", str(steps),
                                             "--perf_warmup_steps", str(args.warmup)], args, work_dir)
                row = {"backend": m["backend"], "precision": m["precision"], "model_dir": path,
                       "infer_flags": extra, "peer": False}
                if finetuned and first:
                    m["metrics"] = infer_row(path, extra + ["--batch_size", "32"], args, work_dir)["metrics"]
            cache[key] = [row, m]
            glue.write_json(cache_path, cache)
            # results name no folder of the machine they were measured on
            m = {k: os.path.relpath(v, ROOT) if k == "model_path" else v for k, v in m.items()}
            if first:
                rows.append({"name": row_name, **{k: os.path.relpath(v, ROOT) if k == "model_dir" else v
                                                  for k, v in row.items()}, "perf": {}})
                if "metrics" in m:
                    rows[-1]["metrics"] = m.pop("metrics")
            rows[-1]["perf"][str(b)] = m
        add_ratios(rows, args.batch_sizes)
        shape = f"{BERT_BASE['num_hidden_layers']} layers, hidden {BERT_BASE['hidden_size']}, random weights"
        title = ("MiniLM (all-MiniLM-L6-v2: 6 layers, hidden 384" + (", fine-tuned on SST-2)" if finetuned
                                                                     else ", fresh head)")
                 if name == "minilm" else f"BERT-base shape ({shape})")
        cases.append({"name": name, "title": title, "accuracy": finetuned, "hf_dir": hf_dir, "rows": rows})

    import nncf
    import onnxruntime
    import openvino

    versions = {**convert.library_versions(), "onnxruntime": onnxruntime.__version__,
                "openvino": openvino.__version__.split("-")[0], "nncf": nncf.__version__}
    command = "python benchmarks/latency/bench_latency.py " + " ".join(
        f"'{a}'" if " " in a else a for a in (argv if argv is not None else sys.argv[1:]))
    results = {"command": command, "machine": common.machine(), "versions": versions,
               "settings": {"seq": SEQ, "threads": args.threads, "steps": args.steps, "warmup": args.warmup,
                            "batch_sizes": args.batch_sizes},
               "wall_seconds": round(time.perf_counter() - start, 1), "models": cases}
    os.makedirs(args.out_dir, exist_ok=True)
    glue.write_json(os.path.join(args.out_dir, "results.json"), results)
    return write_report(results, args.out_dir)


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
    glue.cli(main)
