"""One peer of the latency benchmark (PyTorch, ONNX Runtime, OpenVINO) at one batch size, in its own process.

    python benchmarks/latency/peer.py --peer "onnxruntime dynamic int8" --hf_dir ./my-bert-sst2 \\
        --work_dir ./onnx-work --data_dir $GLUE_DIR --batch_size 32 --accuracy

bench_latency.py runs it once per peer and batch size, so no framework's thread pool disturbs
another; it prints the measurement (infer.measure's keys, plus the SST-2 dev metrics with
--accuracy) as one JSON line. --work_dir holds the exported ONNX models, reused across runs.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import common  # noqa: E402, F401  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402

SEQ = 128
PEERS = ("pytorch fp32", "pytorch dynamic int8", "onnxruntime fp32", "onnxruntime dynamic int8",
         "onnxruntime static int8", "openvino fp32", "openvino default", "openvino nncf int8")
CALIBRATION_ROWS = 300  # training sentences the static-int8 peers calibrate on (seeded sample)


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


def measure_peer(args):
    """One peer at one batch size (and its dev accuracy): the result, also printed as JSON."""
    import infer
    from paddlenlp.transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.hf_dir)
    collate = glue.Collator(list(glue.INPUT_KEYS), tokenizer.pad_token_id, tokenizer.pad_token_type_id, SEQ)
    train = glue.sample(glue.load_split(args.task, "train", args.data_dir), CALIBRATION_ROWS, seed=0)
    calibration = list(glue.batches(glue.convert_examples(train, tokenizer, SEQ, args.task, desc="tokenize calibration"),
                                    1, collate.collate_feeds))
    predict = peer_predict(args.peer, args.hf_dir, args.work_dir, args.cpu_threads, calibration)
    dev = glue.load_dev_splits(args.task, args.data_dir)
    features = {s: glue.convert_examples(e, tokenizer, SEQ, args.task, desc=f"tokenize {s}") for s, e in dev.items()}
    batches = [b for b in glue.batches(next(iter(features.values())), args.batch_size, collate.collate_feeds)
               if len(b["input_ids"]) == args.batch_size][:infer.PERF_BATCHES]
    result = infer.measure(predict, batches, args.perf_warmup_steps, args.perf_steps)
    if args.accuracy:
        result["metrics"] = glue.evaluate(predict, features, args.task, 32, collate)
    print(json.dumps(result))
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=PEERS, required=True)
    parser.add_argument("--hf_dir", required=True, help="the HF model the Paddle model was converted from")
    parser.add_argument("--work_dir", required=True, help="folder for the exported ONNX models (reused)")
    parser.add_argument("--data_dir", default=glue.resolve_data_dir(), help="GLUE folder (default: $GLUE_DIR)")
    parser.add_argument("--task", type=glue.task_arg, default="sst-2", help="GLUE task of the HF model (default: sst-2)")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--perf_steps", type=int, default=100)
    parser.add_argument("--perf_warmup_steps", type=int, default=5)
    parser.add_argument("--cpu_threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--accuracy", action="store_true", help="also score the task's dev set")
    return parser.parse_args(argv)


def main(argv=None):
    return measure_peer(parse_args(argv))


if __name__ == "__main__":
    cli.cli(main)
