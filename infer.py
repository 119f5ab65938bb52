"""Deploy a converted or compressed model with Paddle Inference: GLUE dev accuracy, or latency.

    python infer.py --task_name sst-2 --model_path ./output/sst2/model --device cpu
    python infer.py --task_name sst-2 --model_path ./output/sst2/model --device cpu --perf --batch_size 32
    python -u ./infer.py --task_name cola --model_name_or_path bert-base-cased --model_path ./x2paddle_cola/model \\
        --batch_size 1 --max_seq_length 128 --device gpu --use_trt

Accuracy mode (default) scores the whole GLUE dev set (MNLI: every dev split there is) through
the evaluation loop run.py uses. --perf measures latency on dev batches padded to
--max_seq_length, warm-up excluded. Both write results.json into --save_dir; accuracy mode also
writes predictions.json (every dev row's prediction beside its label).
"""
import argparse
import itertools
import json
import logging
import os
import time

import numpy as np

import cli
import files
import glue
import predictors
import workarounds

logger = logging.getLogger("infer")

DEVICES = ("gpu", "cpu", "xpu")
# paddle: Paddle Inference (every device, TensorRT); openvino: OpenVINO's CPU runtime, which reads
# Paddle models through its Paddle frontend.
BACKENDS = ("paddle", "openvino")

# Batches cycled through in --perf mode (and run to collect TensorRT's shape ranges).
PERF_BATCHES = 8
GPU_MEMORY_POOL_MB = 256  # the initial pool Paddle Inference reserves on the card; it grows as needed
GPU_ID = 0
TRT_WORKSPACE_BYTES = 1 << 30  # scratch memory TensorRT may use while choosing kernels
TRT_MIN_SUBGRAPH_SIZE = 5  # smaller runs of ops stay on Paddle: an engine's launch costs more than they do


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task_name", type=glue.task_arg, default="cola",
                        help=f"GLUE task: {', '.join(glue.TASK_NAMES)} (HF spellings sst2, stsb too)")
    parser.add_argument("--model_type", default=None, help="informational, as in the document")
    parser.add_argument("--model_name_or_path", default=None,
                        help="tokenizer: a folder with vocab.txt and tokenizer_config.json (default: the folder of "
                             "--model_path, where convert.py and run.py put them) or a hub id when online")
    parser.add_argument("--model_path", required=True,
                        help="path prefix of the model: <prefix>.pdmodel and <prefix>.pdiparams")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="tokenizer truncation and padded width (a trace model needs its traced length)")
    parser.add_argument("--device", choices=DEVICES, default="gpu")
    parser.add_argument("--use_trt", action="store_true", help="TensorRT subgraphs (GPU only)")
    parser.add_argument("--int8", action="store_true",
                        help="int8: a TensorRT int8 engine on GPU, oneDNN int8 kernels on CPU (a quantized model)")
    parser.add_argument("--fp16", action="store_true", help="fp16 (GPU only)")
    parser.add_argument("--backend", choices=BACKENDS, default="paddle",
                        help="paddle: Paddle Inference (default; the only GPU/TensorRT path); openvino: OpenVINO "
                             "on CPU, int8 linear layers with --int8")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 (--backend openvino on a CPU with bf16 support, e.g. AMX or AVX-512 BF16)")
    parser.add_argument("--perf", action="store_true", help="measure latency instead of accuracy")
    parser.add_argument("--perf_warmup_steps", type=int, default=20, help="batches run before timing starts")
    parser.add_argument("--perf_steps", type=int, default=100, help="timed batches in --perf mode")
    parser.add_argument("--data_dir", default=None, help="GLUE folder in TSV layout (default: $GLUE_DIR, "
                                                         "else PaddleNLP's download)")
    parser.add_argument("--cpu_threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--enable_mkldnn", action=argparse.BooleanOptionalAction, default=True,
                        help="oneDNN kernels on CPU (Paddle 2.6's default; --no-enable_mkldnn runs MKL and "
                             "native kernels, much slower for BERT)")
    parser.add_argument("--cpu_int8_ops", nargs="+", default=sorted(predictors.ONEDNN_INT8_OPS), metavar="OP_TYPE",
                        help="with --int8 on cpu: the op types oneDNN runs in int8 (default: %(default)s; "
                             "`all` lets Paddle quantize every op that has scales, which breaks BERT's attention)")
    parser.add_argument("--input_names", nargs=3, default=list(glue.INPUT_KEYS),
                        metavar=("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS"),
                        help="the model's feed names for input_ids, attention_mask, token_type_ids "
                             "(x0 x1 x2 for a model X2Paddle wrote without convert.py)")
    parser.add_argument("--save_dir", default="output/infer", help="where results.json goes (default: %(default)s)")
    args = parser.parse_args(argv)
    if sum((args.int8, args.fp16, args.bf16)) > 1:
        parser.error("--int8, --fp16 and --bf16 exclude each other: pick one precision")
    if args.backend == "openvino" and args.device != "cpu":
        parser.error(f"--backend openvino runs on --device cpu (got --device {args.device})")
    if args.bf16 and args.backend != "openvino":
        parser.error("--bf16 needs --backend openvino")
    if args.use_trt and args.device != "gpu":
        parser.error(f"--use_trt needs --device gpu (got --device {args.device})")
    if args.fp16 and args.device != "gpu":
        parser.error(f"--fp16 needs --device gpu (got --device {args.device})")
    if args.int8 and args.device == "xpu":
        parser.error("--int8 runs on gpu (with --use_trt) or cpu (oneDNN), not on xpu")
    if args.int8 and args.device == "gpu" and not args.use_trt:
        parser.error("--int8 on gpu needs --use_trt (Paddle's int8 GPU kernels come from TensorRT)")
    if args.int8 and args.device == "cpu" and args.enable_mkldnn is False:
        parser.error("--int8 on cpu runs oneDNN int8 kernels: drop --no-enable_mkldnn")
    for name in ("batch_size", "max_seq_length", "perf_steps", "cpu_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.perf_warmup_steps < 0:
        parser.error("--perf_warmup_steps must be 0 or more")
    return args


def precision(args):
    return "int8" if args.int8 else "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"


# ----------------------------------------------------------------------------------------
# Model checks
# ----------------------------------------------------------------------------------------
def model_files(model_path):
    paths = (model_path + ".pdmodel", model_path + ".pdiparams")
    missing = [f for f in paths if not os.path.isfile(f)]
    if missing:
        raise cli.InputError(f"--model_path {model_path!r}: missing {', '.join(missing)} (pass the path prefix, "
                             "e.g. ./x2paddle_cola/model for ./x2paddle_cola/model.pdmodel)")
    return paths


def check_device(device):
    """Refuse a device this Paddle build cannot run on, before it silently falls back to CPU."""
    import paddle

    if device == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise cli.InputError("--device gpu (the default) needs Paddle's CUDA build (paddlepaddle-gpu); this one is "
                             "CPU-only: pass --device cpu")
    if device == "xpu" and not paddle.device.is_compiled_with_xpu():
        raise cli.InputError("--device xpu needs Paddle's XPU build; this one has no XPU support: pass --device cpu")


def check_model(model_path, input_names, max_seq_length, int8, backend, device):
    """The model's facts, checked against the flags before anything loads it."""
    model_file, params_file = model_files(model_path)
    model = files.read_paddle_model(model_file, params_file, what=f"--model_path {model_path!r}")
    if sorted(model.feeds) != sorted(input_names):
        raise cli.InputError(f"the model's feeds are {sorted(model.feeds)}, --input_names gives {input_names}: "
                             "pass --input_names in the order input_ids attention_mask token_type_ids")
    fixed = model.fixed_seq_length
    if fixed is not None and fixed != max_seq_length:
        raise cli.InputError(f"the model's sequence length is fixed at {fixed} (a trace conversion): pass "
                             f"--max_seq_length {fixed}, not {max_seq_length}")
    if int8 and not model.quantized:
        raise cli.InputError(f"--int8 needs a quantized model (one run.py wrote with QuantPost or QuantAware); "
                             f"{model_path} has no quantize/dequantize ops: drop --int8")
    if model.quantized and not int8 and backend == "openvino":
        raise cli.InputError(f"{model_path} is quantized: pass --int8 (OpenVINO runs a quantized model "
                             "in int8 only)")
    if model.quantized and not int8 and device == "cpu":
        logger.warning("%s is quantized but runs without --int8: its fake-quant ops run in fp32, several times "
                       "slower than the fp32 model; pass --int8 for the int8 kernels", model_path)
    return model


def load_tokenizer(name_or_path, vocab_size):
    """The tokenizer, checked against the model's vocabulary size."""
    tokenizer = glue.load_tokenizer(name_or_path)
    if vocab_size is not None and len(tokenizer) != vocab_size:
        raise cli.InputError(f"the tokenizer from {name_or_path!r} has {len(tokenizer)} tokens but the "
                             f"model's word embeddings have {vocab_size}: pass the model's own tokenizer folder "
                             "with --model_name_or_path")
    return tokenizer


# ----------------------------------------------------------------------------------------
# Predictor
# ----------------------------------------------------------------------------------------
def cpu_int8_ops(args):
    """The op types oneDNN runs in int8 (an empty set: every op with scales), None for no int8 on CPU."""
    if not (args.int8 and args.device == "cpu"):
        return None
    return set() if args.cpu_int8_ops == ["all"] else set(args.cpu_int8_ops)


def make_config(model_path, device, cpu_threads=1, mkldnn=True, int8_ops=None):
    """A paddle.inference.Config for `device`; on CPU, predictors.cpu_config (int8_ops: see cpu_int8_ops)."""
    from paddle import inference

    if device == "cpu":
        return predictors.cpu_config(model_path, cpu_threads, mkldnn, int8_ops)
    config = inference.Config(*model_files(model_path))
    config.disable_glog_info()
    if device == "gpu":
        config.enable_use_gpu(GPU_MEMORY_POOL_MB, GPU_ID)
    else:
        config.enable_xpu()
    config.switch_ir_optim(True)
    config.enable_memory_optim()
    return config


def enable_trt(config, precision_name, batch_size, shape_file=None):
    from paddle import inference

    mode = {"int8": inference.PrecisionType.Int8, "fp16": inference.PrecisionType.Half,
            "fp32": inference.PrecisionType.Float32}[precision_name]
    # use_calib_mode=False: int8 scales come from the quantized model (PaddleSlim), not calibration
    config.enable_tensorrt_engine(workspace_size=TRT_WORKSPACE_BYTES, max_batch_size=batch_size,
                                  min_subgraph_size=TRT_MIN_SUBGRAPH_SIZE,
                                  precision_mode=mode, use_static=False, use_calib_mode=False)
    if shape_file is not None:
        config.enable_tuned_tensorrt_dynamic_shape(shape_file, True)


def create_predictor(make, model_path, trt=None):
    """predict(feeds) for a config from make() (a fresh one each call).

    trt: None, or (precision, batch size, save_dir, shape batches) for TensorRT, which needs the
    range of every dynamic input shape. That is collected first, as a logged step of the same
    run: a plain GPU predictor runs the shape batches and records the shapes, then the TensorRT
    predictor is built from them (the upstream script collected, printed a hint and exited, so
    its first run measured nothing).
    """
    if trt is None:
        return predictors.predict_fn(predictors.create_predictor(make(), model_path))
    precision_name, batch_size, save_dir, shape_batches = trt
    os.makedirs(save_dir, exist_ok=True)
    shape_file = os.path.join(save_dir, "trt_shape_range.pbtxt")
    logger.info("TensorRT: collecting dynamic shape ranges on %d batches into %s", len(shape_batches), shape_file)
    collect = make()
    collect.collect_shape_range_info(shape_file)
    collector = predictors.predict_fn(predictors.create_predictor(collect, model_path))
    for feeds in shape_batches:
        collector(feeds)
    logger.info("TensorRT: building the %s engine with the collected shapes", precision_name)
    config = make()
    enable_trt(config, precision_name, batch_size, shape_file)
    return predictors.predict_fn(predictors.create_predictor(config, model_path))


# ----------------------------------------------------------------------------------------
# OpenVINO
# ----------------------------------------------------------------------------------------
def openvino_int8_edit(seven_bit_weights):
    """An edited_model edit that makes a PaddleSlim int8 model one OpenVINO reads and runs right in int8.

    What OpenVINO's Paddle frontend does not take as PaddleSlim writes it:
    - 0-D activation scales in .pdiparams: "dims of scale should not be greater than 2"
      (src/frontends/paddle/src/op/dequantize_linear.cpp): stored as [1].
    - quantize/dequantize pairs with only_observer=True, which Paddle runs as identity and OpenVINO
      quantizes, and pairs around tensors that are not a linear layer's input (attention matmuls,
      the mask path, whose scale is inf): bypassed, as infer.py's oneDNN path runs only the linear
      layers in int8. Paddle itself scores the edited model as the original.
    - seven_bit_weights (CPUs without VNNI/AMX): weights halved to 7 bits with doubled scales, so
      that the 16-bit pair sums of the int8 kernels cannot saturate (NNCF's "overflow fix").
    A tensor name can be written twice (PaddleSlim puts an observer pair and a real pair on one
    LayerNorm output), so a pair's readers are the ops after it up to the next writer of the name.
    """
    def edit(block, scope):
        import paddle

        ops = list(block.ops)
        for op in ops:
            if op.type in ("quantize_linear", "dequantize_linear"):
                tensor = scope.find_var(op.input("Scale")[0]).get_tensor()
                scale = np.array(tensor)
                if scale.ndim == 0:
                    tensor.set(scale.reshape([1]), paddle.CPUPlace())
        weights = set()  # outputs of the weights' dequantize_linear
        for _, op, weight, scale in workarounds.weight_dequantizers(block, scope):
            weights.add(op.output("Y")[0])
            if seven_bit_weights:
                scope.find_var(op.input("X")[0]).get_tensor().set(
                    np.round(weight.astype(np.float32) / 2).astype(np.int8), paddle.CPUPlace())
                scope.find_var(op.input("Scale")[0]).get_tensor().set((scale * 2).astype(np.float32),
                                                                     paddle.CPUPlace())

        ins = [set(op.input_arg_names) for op in ops]  # kept up to date below: the scans are many
        outs = [set(op.output_arg_names) for op in ops]

        def readers(start, name):
            found = []
            for index in range(start + 1, len(ops)):
                if name in ins[index]:
                    found.append(index)
                if name in outs[index]:
                    break
            return found

        def feeds_linear(op, name):
            return (op.type in ("matmul", "matmul_v2") and op.input("X")[0] == name
                    and (op.input("Y")[0] in weights or block.var(op.input("Y")[0]).persistable))

        doomed = set()
        for index, dq in enumerate(ops):
            if dq.type != "dequantize_linear" or block.var(dq.input("X")[0]).persistable:
                continue
            q_index = next(i for i in range(index - 1, -1, -1) if dq.input("X")[0] in outs[i])
            source, out = ops[q_index].input("X")[0], dq.output("Y")[0]
            users = readers(index, out)
            observer = dq.has_attr("only_observer") and dq.attr("only_observer")
            if not observer and any(feeds_linear(ops[i], out) for i in users):
                continue
            for i in users:
                ops[i]._rename_input(out, source)
                ins[i] = set(ops[i].input_arg_names)
            doomed.add(index)
            if set(readers(q_index, ops[q_index].output("Y")[0])) <= doomed:
                doomed.add(q_index)
        for index in sorted(doomed, reverse=True):
            block._remove_op(index, sync=False)
    return edit


def openvino_predictor(model_path, cpu_threads, int8=False, bf16=False):
    """predict(feeds) -> logits through OpenVINO on CPU, and what ran: {'openvino', 'int8_linear_layers', ...}."""
    try:
        import openvino as ov
    except ImportError:
        raise cli.InputError("--backend openvino needs the openvino package: pip install -r requirements.txt") from None
    core = ov.Core()
    if bf16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise cli.InputError("this CPU has no bf16 support (OpenVINO lists none): drop --bf16")
    facts = {"openvino": ov.__version__}
    if int8:
        facts["seven_bit_weights"] = not predictors.has_int8_dot_product()
        program, params = predictors.edited_model(model_path, openvino_int8_edit(facts["seven_bit_weights"]))
        model = core.read_model(model=program, weights=ov.Tensor(np.frombuffer(params, dtype=np.uint8)))
    else:
        model = core.read_model(model_path + ".pdmodel")
    # An explicit precision hint: left alone, OpenVINO runs fp32 models in bf16 on AMX CPUs.
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": cpu_threads,
                                                  "PERFORMANCE_HINT": "LATENCY",
                                                  "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"})
    facts["int8_linear_layers"] = sum(
        1 for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul")
        and op.get_rt_info()["runtimePrecision"].astype(str) in ("i8", "u8"))
    if int8 and not facts["int8_linear_layers"]:
        raise RuntimeError(f"OpenVINO ran no linear layer of {model_path} in int8")
    request = compiled.create_infer_request()
    names = [port.get_any_name() for port in compiled.inputs]

    def predict(feeds):
        return np.array(request.infer({name: feeds[name] for name in names})[0])  # a copy: the request reuses it

    return predict, facts


# ----------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------
def measure(predict, batches, warmup_steps, steps):
    """Latency per batch (ms) over `steps` timed batches after `warmup_steps` untimed ones."""
    from tqdm import tqdm

    for i in range(warmup_steps):
        predict(batches[i % len(batches)])
    times, sequences = [], 0
    for i in tqdm(range(steps), desc="perf", leave=False):
        feeds = batches[i % len(batches)]
        start = time.perf_counter()
        predict(feeds)
        times.append(time.perf_counter() - start)
        sequences += len(next(iter(feeds.values())))
    ms = np.array(times) * 1000.0
    total = float(np.sum(times))
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "ms_per_sequence": 1000.0 * total / sequences, "sequences_per_second": sequences / total,
            "timed_batches": steps, "timed_sequences": sequences, "warmup_batches": warmup_steps}


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()
    logger.info("arguments: %s", json.dumps(vars(args)))
    if args.device != "cpu":
        check_device(args.device)
    model = check_model(args.model_path, args.input_names, args.max_seq_length, args.int8, args.backend, args.device)
    save_dir = files.check_save_dir(args.save_dir, inputs=[args.model_path + ".pdmodel"], replace=False)
    args.model_name_or_path = args.model_name_or_path or os.path.dirname(os.path.abspath(args.model_path))
    tokenizer = load_tokenizer(args.model_name_or_path, model.vocab_size)

    task = args.task_name
    dev = glue.load_dev_splits(task, glue.resolve_data_dir(args.data_dir))
    features = {split: glue.convert_examples(examples, tokenizer, args.max_seq_length, task,
                                             desc=f"tokenize {split}") for split, examples in dev.items()}
    collate = glue.Collator(args.input_names, tokenizer.pad_token_id, tokenizer.pad_token_type_id,
                            args.max_seq_length, padding="max_length")
    first_batches = list(itertools.islice(glue.batches(next(iter(features.values())), args.batch_size,
                                                       collate.collate_feeds), PERF_BATCHES))
    if args.backend == "openvino":
        predict, backend_facts = openvino_predictor(args.model_path, args.cpu_threads, args.int8, args.bf16)
    else:
        def make():
            return make_config(args.model_path, args.device, args.cpu_threads, args.enable_mkldnn, cpu_int8_ops(args))

        trt = (precision(args), args.batch_size, save_dir, first_batches) if args.use_trt else None
        predict, backend_facts = create_predictor(make, args.model_path, trt), {}

    setup = {"task_name": task, "model_path": args.model_path, "device": args.device,
             "backend": "openvino" if args.backend == "openvino" else
             "paddle-inference" + ("+tensorrt" if args.use_trt else ""), **backend_facts,
             "precision": precision(args), "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
             "cpu_threads": args.cpu_threads if args.device == "cpu" else None,
             "mkldnn": bool(args.backend == "paddle" and args.device == "cpu" and args.enable_mkldnn),
             "cpu_int8_ops": args.cpu_int8_ops if args.int8 and args.backend == "paddle" and args.device == "cpu"
             else None}
    setup["int8_weight_bits"] = predictors.onednn_weight_bits() if setup["cpu_int8_ops"] else None
    if args.perf:
        # Full batches only: a dev set smaller than PERF_BATCHES batches is repeated to fill them.
        dev_rows = next(iter(features.values()))
        rows = list(itertools.islice(itertools.cycle(dev_rows), args.batch_size * PERF_BATCHES))
        perf_batches = list(glue.batches(rows, args.batch_size, collate.collate_feeds))
        result = {"mode": "perf", **setup, **measure(predict, perf_batches, args.perf_warmup_steps, args.perf_steps),
                  "distinct_rows": min(len(dev_rows), len(rows))}
        line = (f"perf {task} {setup['backend']} {setup['precision']} {args.device} batch {args.batch_size} "
                f"seq {args.max_seq_length}: p50 {result['p50_ms']:.2f} ms/batch, p90 {result['p90_ms']:.2f}, "
                f"p99 {result['p99_ms']:.2f}, {result['sequences_per_second']:.1f} seq/s")
    else:
        predictions = {}
        metrics = glue.evaluate(predict, features, task, args.batch_size, collate, predictions=predictions)
        result = {"mode": "accuracy", **setup, "metrics": metrics}
        predicted = {split: {"prediction": predictions[split], "label": [f["label"].item() for f in features[split]]}
                     for split in features}
        line = f"accuracy {task} {args.model_path}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
    os.makedirs(save_dir, exist_ok=True)
    if not args.perf:
        cli.write_json(os.path.join(save_dir, "predictions.json"), predicted)
    cli.write_json(os.path.join(save_dir, "results.json"), result)
    print(line)
    return result


if __name__ == "__main__":
    cli.cli(main)
