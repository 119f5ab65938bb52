"""SmoothQuant before quantization (post-training, or aware training): move activation outliers into the weights.

A fine-tuned BERT's LayerNorm outputs carry one channel about 20 times larger than the rest (about
30 against a median channel of 1.6 in the MiniLM of benchmarks/reproduce), and the GELU outputs
the FFN's second layer reads carry rare tokens of 15-25 in one channel against 3-6 elsewhere.
Quantizing such an activation with one scale per tensor leaves the ordinary channels a handful of
int8 steps. Here each quantizable linear layer's input x is divided per channel by s and the
weight's rows multiplied by s, with s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) (Xiao et al.,
SmoothQuant, 2023): the product is the same in fp32, and x/s has no outlier channel left.

The division is an elementwise_mul op inserted before the layers that read x (they share one
s), since x also feeds the residual connection and cannot be scaled where it is made. It runs in
fp32 beside the int8 layers. run.py applies it through before_calibration (QuantPost) or to its
copy of the model before QAT (smoothed_copy).
"""
import contextlib
import itertools
import logging
import os

import numpy as np

import predictors
import workarounds

logger = logging.getLogger("smooth")

LINEAR_TYPES = ("matmul", "matmul_v2")


def linear_inputs(block, op_types=LINEAR_TYPES, skip=()):
    """{activation name: [(op, weight name)]} of the linear layers to smooth, by the activation they read.

    A linear layer is a matmul with one persistable input (its weight), not in `skip`
    (QuantPost.skip_tensor_list: those stay fp32 and keep reading the activation as it is, as do
    its other readers, e.g. the residual add).
    """
    persistable = {v.name for v in block.vars.values() if v.persistable}
    found = {}
    for op in block.ops:
        if op.type not in op_types:
            continue
        weights = [n for n in op.input_arg_names if n in persistable]
        if len(weights) != 1 or op.attr("trans_x" if op.type == "matmul_v2" else "transpose_X"):
            continue
        x = next(n for n in op.input_arg_names if n != weights[0])
        if x == op.input("X")[0] and weights[0] not in skip:
            found.setdefault(x, []).append((op, weights[0]))
    return found


def transposed(op):
    """Whether a linear matmul reads its weight as [outputs, input channels]."""
    return op.attr("trans_y" if op.type == "matmul_v2" else "transpose_Y")


def weight_rows(op, weight):
    """The weight as [input channels, outputs]."""
    return weight.T if transposed(op) else weight


def channel_ranges(program, executor, names, batches):
    """{activation name: max |x| per channel (last axis)} over the batches (feed dicts).

    Each batch runs one row at a time: the executor holds every fetched activation of a run at
    once, so this bounds the memory by one row's (a BERT-base's 8-row batch held about 1 GB more).
    """
    block = program.global_block()
    fetch = [block.var(n) for n in names]
    ranges = {name: None for name in names}
    for feed in batches:
        feed = {k: np.asarray(v) for k, v in feed.items()}
        for row in range(len(next(iter(feed.values())))):
            outs = executor.run(program, feed={k: v[row:row + 1] for k, v in feed.items()}, fetch_list=fetch)
            for name, value in zip(names, outs):
                peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
                ranges[name] = peak if ranges[name] is None else np.maximum(ranges[name], peak)
    return ranges


def smooth(block, scope, ranges, layers, alpha):
    """Insert x * (1/s) before each activation's readers and scale their weights' rows by s, in place.

    Args:
        block, scope: the program's global block and the scope holding its weights.
        ranges: {activation: max |x| per channel} (channel_ranges).
        layers: {activation: [(op, weight name)]} (linear_inputs).
        alpha: how much of each outlier moves into the weights (0: none, 1: all).
    Returns:
        {activation: (largest channel max / median channel max) before, after}.
    """
    import paddle

    report = {}
    for x, readers in layers.items():
        weights = {w: np.array(scope.find_var(w).get_tensor()) for _, w in readers}
        w_peak = np.max([np.abs(weight_rows(op, weights[w])).max(axis=1) for op, w in readers], axis=0)
        a_peak = ranges[x]
        s = np.maximum(a_peak, 1e-5) ** alpha / np.maximum(w_peak, 1e-5) ** (1 - alpha)
        s = np.where((a_peak > 0) & (w_peak > 0), s, 1.0).astype(np.float32)
        for op, w in readers:
            scaled = weights[w] * (s[None, :] if transposed(op) else s[:, None])
            scope.find_var(w).get_tensor().set(np.ascontiguousarray(scaled, dtype=np.float32), paddle.CPUPlace())
        inverse = block.create_var(name=f"{x}.smooth_inverse", shape=[s.size], dtype="float32", persistable=True)
        scope.var(inverse.name).get_tensor().set(1.0 / s, paddle.CPUPlace())
        source = block.var(x)
        out = block.create_var(name=f"{x}.smoothed", shape=source.shape, dtype=source.dtype)
        first = min(block.ops.index(op) for op, _ in readers)
        block._insert_op(first, type="elementwise_mul", inputs={"X": [source], "Y": [inverse]},
                         outputs={"Out": [out]}, attrs={"axis": -1})
        for op, _ in readers:
            op._rename_input(x, out.name)
        after = a_peak / s
        report[x] = (float(a_peak.max() / np.median(a_peak)), float(after.max() / np.median(after)))
    return report


def smoothed_copy(model_dir, model_filename, params_filename, batches, alpha, op_types, skip=()):
    """A smoothed copy of a saved inference model, in `<model_dir>_smoothed`; returns that folder.

    The channel ranges come from running the model on `batches` (feed dicts), in a scope of its own.
    """
    import paddle
    from tqdm import tqdm

    out = os.path.normpath(model_dir) + "_smoothed"
    scope, exe = paddle.static.Scope(), paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(scope):
        program, feed_names, fetch_vars = paddle.static.load_inference_model(
            model_dir, exe, model_filename=model_filename, params_filename=params_filename)
        block = program.global_block()
        layers = linear_inputs(block, op_types, skip)
        ranges = channel_ranges(program, exe, list(layers), tqdm(batches, desc="smooth: channel ranges", leave=False))
        report = smooth(block, scope, ranges, layers, alpha)
        program._sync_with_cpp()
        os.makedirs(out, exist_ok=True)
        for name, data in zip((model_filename, params_filename),
                              predictors.serialize(program, feed_names, fetch_vars, exe)):
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
    worst = max(report.values(), key=lambda r: r[0]) if report else (1.0, 1.0)
    logger.info("smooth (alpha %.2f): %d activations read by %d linear layers; largest channel over the median "
                "channel: worst %.1f -> %.1f", alpha, len(layers), sum(len(v) for v in layers.values()), *worst)
    return out


@contextlib.contextmanager
def before_calibration(alpha, skip=()):
    """PaddleSlim's post-training quantization (QuantPost, or the HyperParameterOptimization search)
    calibrates a smoothed copy of the model it is given (smoothed_copy); alpha None: the model itself.

    The channel ranges are taken on the calibration rows: QuantPost's batch_nums batches of its
    batch_size; for the search, its largest batch_num batches of Global.batch_size. numpy's random
    state, which orders the batches, is put back afterwards, so calibration then draws the same rows.
    """
    if alpha is None:
        yield
        return
    from paddleslim.auto_compression import compressor, post_quant_hpo

    def copy_for(kwargs, loader, count):
        state = np.random.get_state()
        try:
            return smoothed_copy(kwargs["model_dir"], kwargs["model_filename"], kwargs["params_filename"],
                                 itertools.islice(loader, count), alpha,
                                 kwargs.get("quantizable_op_type") or LINEAR_TYPES, skip)
        finally:  # the smoothing pass's scope and weights are garbage by now
            np.random.set_state(state)
            predictors.release_freed_memory()

    def wrap_post(quant_post):
        def smoothed(*args, **kwargs):
            loader = kwargs["data_loader"]
            if kwargs.get("batch_size"):
                loader = workarounds.calibration_loader(loader, kwargs["batch_size"])
            return quant_post(*args, **{**kwargs, "model_dir": copy_for(kwargs, loader, kwargs["batch_nums"])})
        return smoothed

    def wrap_hpo(quant_post_hpo):
        def smoothed(*args, **kwargs):
            model_dir = copy_for(kwargs, kwargs["train_dataloader"], max(kwargs["batch_num"]))
            return quant_post_hpo(*args, **{**kwargs, "model_dir": model_dir})
        return smoothed

    with workarounds.wrapped(compressor, "quant_post", wrap_post), \
            workarounds.wrapped(post_quant_hpo, "quant_post_hpo", wrap_hpo):
        yield
