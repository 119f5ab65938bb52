"""Paddle Inference predictors on CPU, built the way infer.py deploys a model.

Shared by infer.py (--device cpu), run.py (every dev evaluation of a saved model, so that the
metric it reports is the one users get) and convert.py (its check against PyTorch):

    predict = predictors.cpu_predictor("output/sst2/model", threads=2)   # fp32, oneDNN
    predict, path = predictors.deployed_cpu_predictor(
        predictors.read_model("output/sst2/model.pdmodel", "output/sst2/model.pdiparams"))
    logits = predict({"input_ids": ..., "attention_mask": ..., "token_type_ids": ...})

A model is a path prefix (`dir/model` for dir/model.pdmodel + dir/model.pdiparams) or a
(program bytes, params bytes) pair held in memory.
"""


import ctypes
import functools
import gc
import logging
import os

import cli
import workarounds

logger = logging.getLogger("predictors")

# Op types oneDNN runs in int8 on CPU: the linear layers (fc after Paddle's fc_fuse_pass), 95%
# (MiniLM) to 97% (BERT-base) of the FLOPs at sequence length 128. PaddleSlim's onnx_format export
# puts a quantize/dequantize pair on nearly every tensor; given all of them (enable_mkldnn_int8()
# with no list), Paddle 2.6 also runs the attention matmuls (Q.K^T fused with the scale and the
# -3.4e38 mask add, then softmax.V) in int8, and a PTQ MiniLM's SST-2 dev accuracy falls to
# chance (benchmarks/latency/RESULTS.md has the measurements).
ONEDNN_INT8_OPS = frozenset({"fc"})


def read_model(model_file, params_file):
    """(program bytes, params bytes) of a model's two files."""
    with open(model_file, "rb") as f:
        program = f.read()
    with open(params_file, "rb") as f:
        return program, f.read()


def predict_fn(predictor):
    """Wrap a paddle.inference predictor as predict(feeds) -> first output, feeding by name."""

    def predict(feeds):
        for name in predictor.get_input_names():
            predictor.get_input_handle(name).copy_from_cpu(feeds[name])
        predictor.run()
        return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

    return predict


def create_predictor(config, what):
    """paddle.inference.create_predictor, with a model whose weights cannot be read as an InputError."""
    from paddle import inference

    try:
        return inference.create_predictor(config)
    except RuntimeError as exc:  # Paddle reports a short or damaged .pdiparams as a RuntimeError
        raise cli.InputError(f"cannot load {what} (truncated or corrupt?): {str(exc).strip().splitlines()[0]}; "
                             "convert or compress the model again") from None


# ----------------------------------------------------------------------------------------
# Models edited in memory
# ----------------------------------------------------------------------------------------
def serialize(program, feed_names, fetch_vars, exe):
    """(program bytes, params bytes) of an inference program whose weights are in the current scope."""
    import paddle

    feeds = [program.global_block().var(n) for n in feed_names]
    return (paddle.static.serialize_program(feeds, fetch_vars, program=program),
            paddle.static.serialize_persistables(feeds, fetch_vars, exe, program=program))


def edited_model(model, edit):
    """Load a model into a scope of its own, apply edit(block, scope) to it, and return its bytes.

    The model on disk is never written: predictors take the edited bytes from memory.
    """
    import paddle

    dynamic = paddle.in_dynamic_mode()  # run.py calls this from inside PaddleSlim, in static mode
    paddle.enable_static()
    try:
        scope, exe = paddle.static.Scope(), paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(scope):
            if isinstance(model, str):
                program, feed_names, fetch_vars = paddle.static.load_inference_model(model, exe)
            else:  # from memory: Paddle 2.6 takes the bytes in place of the file names
                program, feed_names, fetch_vars = paddle.static.load_inference_model(
                    None, exe, model_filename=model[0], params_filename=model[1])
            edit(program.global_block(), scope)
            program._sync_with_cpp()
            return serialize(program, feed_names, fetch_vars, exe)
    finally:
        if dynamic:
            paddle.disable_static()


def has_int8_weights(program_bytes):
    """Whether a saved model stores its weights quantized, read by dequantize_linear ops (what
    QuantPost and QuantAware save): the models `infer.py --int8` runs with oneDNN int8 kernels.

    A fake-quant training graph has its weights pass through quantize_linear first. The
    ProgramDesc records these weights as fp32; only their tensors are int8.
    """
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()
    desc.ParseFromString(program_bytes)
    block = desc.blocks[0]
    persistable = {var.name for var in block.vars if var.persistable}
    return any(op.type == "dequantize_linear" and arg.parameter == "X" and set(arg.arguments) & persistable
               for op in block.ops for arg in op.inputs)


def release_freed_memory():
    """Collect garbage and give the heap pages freed so far back to the system (glibc's malloc_trim;
    elsewhere only the collection).

    glibc keeps the freed pages of its heap (its mmap threshold grows as large blocks are freed),
    and the next peak sits on top of them: the smoothing pass's model copy under calibration, and
    calibration's activations under the int8 predictor that scores the result. A BERT-base PTQ
    peaked at 8.75 GiB there, with 3.8 GiB held before the predictor was built; released first,
    2.1 GiB was, and the peak 6.55 GiB.
    """
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


# ----------------------------------------------------------------------------------------
# CPU predictors
# ----------------------------------------------------------------------------------------
def cpu_flags():
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def has_int8_dot_product(flags=None):
    """VNNI or AMX (flags: this CPU's by default): int8 products summed in 32 bits. Without them (AVX2,
    plain AVX-512) x86 int8 kernels sum pairs of u8*s8 products in 16 bits (vpmaddubsw), which
    saturates on 8-bit weights."""
    return bool((cpu_flags() if flags is None else flags) & {"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def onednn_weight_bits():
    """The bits oneDNN's int8 weights get on this CPU (workarounds.onednn_fc_weight_scales): 7 on an x86 CPU
    without VNNI/AMX, whose kernels would saturate on 8 (said once per process), else 8."""
    flags = cpu_flags()
    if "avx2" in flags and not has_int8_dot_product(flags):
        logger.warning("this CPU has no VNNI or AMX: oneDNN's int8 kernels add pairs of int8 products in 16 bits, "
                       "so the int8 weights get 7 bits here (as OpenVINO does), and int8 dev metrics can be a "
                       "little lower than on a CPU with them")
        return 7
    return 8


def optimized_int8_model(model, threads, int8_ops):
    """A quantized model as Paddle's oneDNN int8 passes turn it into int8 kernels, with each int8 fc's
    weight scales set right: (program bytes, params bytes), to run without passes (cpu_config).

    The model (a path prefix, or bytes) is edited in memory (workarounds.for_onednn_int8), a
    predictor runs the passes on it once and saves what they made (enable_save_optim_model, in a
    temporary folder of its own), and that program gets the fix the passes need
    (workarounds.onednn_fc_weight_scales, with onednn_weight_bits).
    """
    import tempfile

    from paddle import inference

    bits, peaks = onednn_weight_bits(), {}
    edited = edited_model(model, functools.partial(workarounds.for_onednn_int8, weight_bits=bits, peaks=peaks))
    release_freed_memory()  # the edit's scope
    with tempfile.TemporaryDirectory(prefix="onednn-int8-") as folder:
        config = model_config(edited, threads)
        del edited  # the config holds its own copy
        config.enable_mkldnn()
        config.enable_mkldnn_int8(set(int8_ops))  # folds the model's Q/DQ ops into int8 kernels
        config.switch_ir_optim(True)
        config.set_optim_cache_dir(folder)
        config.enable_save_optim_model(True)
        inference.create_predictor(config)  # writes _optimized.pdmodel / .pdiparams into the folder
        del config
        release_freed_memory()  # the passes' predictor
        program, params = read_model(os.path.join(folder, "_optimized.pdmodel"),
                                     os.path.join(folder, "_optimized.pdiparams"))
    return workarounds.onednn_fc_weight_scales(program, peaks, bits), params


def model_config(model, threads):
    """A CPU paddle.inference.Config of a model (a path prefix, or (program, params) bytes) with `threads` threads."""
    from paddle import inference

    if isinstance(model, str):
        config = inference.Config(model + ".pdmodel", model + ".pdiparams")
    else:
        config = inference.Config()
        config.set_model_buffer(model[0], len(model[0]), model[1], len(model[1]))
    config.disable_glog_info()
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    return config


def cpu_config(model, threads, mkldnn=True, int8_ops=None):
    """A CPU paddle.inference.Config: oneDNN unless mkldnn=False, Paddle's IR passes on.

    int8_ops: None for fp32; else the op types oneDNN runs in int8 (an empty set: every op with
    scales): the model as optimized_int8_model makes it, which has had its passes already.
    """
    if int8_ops is not None:
        model = optimized_int8_model(model, threads, int8_ops)
    config = model_config(model, threads)
    if mkldnn:
        config.enable_mkldnn()
    else:
        config.disable_mkldnn()
    config.switch_ir_optim(int8_ops is None)
    config.enable_memory_optim()
    return config


def cpu_predictor(model, threads=1, int8_ops=None, what=None):
    """predict(feeds) -> logits through a CPU predictor made by cpu_config."""
    what = what or (model if isinstance(model, str) else "the model")
    return predict_fn(create_predictor(cpu_config(model, threads, int8_ops=int8_ops), what))


def deployed_cpu_config(model, threads=1):
    """The CPU config `infer.py` deploys `model` (program bytes, params bytes) with, and what it runs.

    A model with int8 weights runs as under `infer.py --int8` (oneDNN int8 linear layers), any
    other in fp32, so a compressed model is scored as users get it, not through its fake-quant
    ops in fp32 (several times slower, and not what is deployed).

    Returns:
        (config, {"backend": ..., "device": "cpu", "precision": ..., "cpu_int8_ops": ... or None,
                  "int8_weight_bits": 8, or 7 on a CPU without VNNI/AMX, or None})
    """
    int8_ops = sorted(ONEDNN_INT8_OPS) if has_int8_weights(model[0]) else None
    path = {"backend": "paddle-inference", "device": "cpu", "precision": "int8" if int8_ops else "fp32",
            "cpu_int8_ops": int8_ops, "int8_weight_bits": onednn_weight_bits() if int8_ops else None}
    return cpu_config(model, threads, int8_ops=int8_ops), path


def deployed_cpu_predictor(model, threads=1, what="the model"):
    """predict(feeds) -> logits through the predictor deployed_cpu_config makes, and what it runs."""
    config, path = deployed_cpu_config(model, threads)
    return predict_fn(create_predictor(config, what)), path
