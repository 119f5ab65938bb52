"""Convert a fine-tuned HuggingFace PyTorch BERT into a Paddle static inference model.

    python convert.py --model_name_or_path ./bert-cola --method trace --max_seq_length 128 --save_dir ./x2paddle_cola
    python convert.py --model_name_or_path ./bert-cola --method onnx --save_dir ./x2paddle_cola_onnx

`trace` runs X2Paddle's pytorch2paddle (jit trace): the sequence length is fixed at
--max_seq_length. `onnx` exports with torch.onnx and converts with X2Paddle's onnx2paddle:
batch and sequence length are both dynamic. Either way the written graph is rewritten into
the form of a native Paddle BERT (see "Graph rewrite" below) so that every PaddleSlim
strategy accepts it, and its logits are checked against PyTorch before anything is written.
"""
import argparse
import contextlib
import io
import json
import logging
import os
import time

import numpy as np

import cli  # first: loads the system zlib before torch and paddle
import files
import predictors

logger = logging.getLogger("convert")

METHODS = ("trace", "onnx")
# BERT-family checkpoints: BERT cased/uncased and MiniLM all use transformers' `bert` type.
SUPPORTED_MODEL_TYPES = ("bert",)
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")  # the document's order
# X2Paddle's ONNX op mapper goes up to opset 15.
ONNX_OPSETS = tuple(range(11, 16))
# The trace is recorded at this batch size; the graph rewrite then frees the batch dim.
TRACE_BATCH = 2
PARITY_ATOL = 1e-4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True,
                        help="local folder of a HF BertForSequenceClassification, or a hub id (online only)")
    parser.add_argument("--method", choices=METHODS, default="trace",
                        help="trace: X2Paddle pytorch2paddle, input shape fixed at [batch, --max_seq_length] "
                             "(batch stays dynamic); onnx: torch.onnx + X2Paddle onnx2paddle, "
                             "batch and sequence length dynamic (default: %(default)s)")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="sequence length of the traced graph and of the parity inputs (default: %(default)s)")
    parser.add_argument("--save_dir", required=True, help="output folder (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --save_dir")
    parser.add_argument("--opset", type=int, choices=ONNX_OPSETS, default=13,
                        help="ONNX opset for --method onnx (default: %(default)s)")
    parser.add_argument("--num_labels", type=int, default=None,
                        help="attach a new, randomly initialised classification head with this many labels "
                             "when the checkpoint has none (a bare encoder); for latency work only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parity inputs and of a new head")
    args = parser.parse_args(argv)
    if args.max_seq_length < 2:
        parser.error(f"--max_seq_length must be at least 2, got {args.max_seq_length}")
    if args.num_labels is not None and args.num_labels < 1:
        parser.error(f"--num_labels must be at least 1, got {args.num_labels}")
    return args


# ----------------------------------------------------------------------------------------
# PyTorch side
# ----------------------------------------------------------------------------------------
def load_bert_config(name_or_path):
    """The HF config of a BERT-family checkpoint; an InputError for a bad folder or another family."""
    from transformers import AutoConfig

    local = files.hf_model_folder(name_or_path)
    # The model type comes from config.json itself: transformers guesses one from the folder's
    # name when the file lacks it (an empty folder named "empty" loads as an "mpt" model).
    model_type = local.get("model_type") if local is not None else None
    config = None
    if local is None or model_type in SUPPORTED_MODEL_TYPES:
        try:
            config = AutoConfig.from_pretrained(name_or_path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise cli.InputError(f"cannot load a HuggingFace config from {name_or_path!r}: "
                                 f"{str(exc).splitlines()[0]}") from exc
        model_type = config.model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        found = f"is a {model_type!r} model" if model_type else "has no model_type in its config.json"
        raise cli.InputError(f"{name_or_path!r} {found}; supported: BERT-family checkpoints (model_type "
                             f"{', '.join(SUPPORTED_MODEL_TYPES)}: BERT cased/uncased, MiniLM)")
    return config


def load_torch_model(name_or_path, num_labels=None):
    """Load a BERT-family sequence classifier with eager attention.

    Eager attention matters: with transformers' default SDPA attention the traced program
    holds Paddle's `flash_attn` op, which has no CPU kernel.

    Args:
        name_or_path: local folder or hub id.
        num_labels: when set, a checkpoint without a classification head gets a new one.
    Returns:
        (model in eval mode, tokenizer)
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = load_bert_config(name_or_path)
    architectures = config.architectures or []
    is_classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
    kwargs = {"attn_implementation": "eager"}
    if not is_classifier:
        if num_labels is None:
            raise cli.InputError(f"{name_or_path!r} is not a sequence-classification model "
                                 f"(architectures: {architectures or 'none'}): fine-tune it first, or pass "
                                 "--num_labels N to attach an untrained head for latency work")
        kwargs["num_labels"] = num_labels
    elif num_labels is not None and num_labels != config.num_labels:
        raise cli.InputError(f"{name_or_path!r} already has a {config.num_labels}-label head; "
                             f"drop --num_labels {num_labels}")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs).eval()
    except Exception as exc:  # noqa: BLE001  torch, safetensors and pickle each raise their own type
        if not files.is_local(name_or_path):
            raise
        raise cli.InputError(f"cannot load the weights in {name_or_path!r} (truncated or corrupt?): "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    return model, tokenizer


def logits_module(model):
    """Wrap a HF classifier as forward(input_ids, attention_mask, token_type_ids) -> logits.

    Positional inputs in the document's order are what both tracers record as feeds.
    """
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits

    return LogitsOnly(model).eval()


def make_inputs(config, batch_size, seq_len, rng):
    """Random BERT inputs: non-zero token ids, padded tails, two segments.

    Every row has a different length (the first row is full), so that masking errors show.
    """
    lengths = np.linspace(seq_len, max(1, seq_len // 3), num=batch_size).round().astype(int)
    input_ids = rng.integers(1, config.vocab_size, size=(batch_size, seq_len), dtype=np.int64)
    attention_mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int64)
    token_type_ids = np.zeros((batch_size, seq_len), dtype=np.int64)
    if config.type_vocab_size > 1:
        token_type_ids[:, seq_len // 2:] = 1
    input_ids = np.where(attention_mask == 1, input_ids, config.pad_token_id or 0)
    token_type_ids *= attention_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def torch_logits(wrapper, feeds):
    import torch

    with torch.no_grad():
        return wrapper(*[torch.from_numpy(feeds[n]) for n in INPUT_NAMES]).numpy()


# ----------------------------------------------------------------------------------------
# X2Paddle
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_stdout():
    """X2Paddle prints one line per converted node (to stdout, and for ONNX "\\rConverting node i" to
    stderr); keep that in the debug log instead."""
    buf = io.StringIO()
    x2paddle_logger = logging.getLogger("x2paddle.convert")  # sets its own INFO level
    level = x2paddle_logger.level
    x2paddle_logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        x2paddle_logger.setLevel(level)
        logger.debug("X2Paddle output:\n%s", buf.getvalue())


def x2paddle_trace(wrapper, example, work_dir):
    import torch
    from x2paddle.convert import pytorch2paddle

    examples = [torch.from_numpy(example[n]) for n in INPUT_NAMES]
    with quiet_stdout():
        pytorch2paddle(wrapper, save_dir=work_dir, jit_type="trace", input_examples=examples,
                       disable_feedback=True)
    return os.path.join(work_dir, "inference_model", "model")


def x2paddle_onnx(wrapper, example, work_dir, opset):
    import torch
    from x2paddle.convert import onnx2paddle

    onnx_path = os.path.join(work_dir, "model.onnx")
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with quiet_stdout():
        # dynamo=False: the TorchScript exporter, whose opsets X2Paddle understands.
        torch.onnx.export(wrapper, tuple(torch.from_numpy(example[n]) for n in INPUT_NAMES), onnx_path,
                          input_names=list(INPUT_NAMES), output_names=["logits"], dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False)
        onnx2paddle(onnx_path, save_dir=os.path.join(work_dir, "x2paddle"), disable_feedback=True)
    return os.path.join(work_dir, "x2paddle", "inference_model", "model")


# ----------------------------------------------------------------------------------------
# Graph rewrite: make X2Paddle's program look like a native Paddle BERT to PaddleSlim.
#
# What PaddleSlim needs and X2Paddle does not give:
# - Linear layers as matmul_v2(x, W[in, out]) + elementwise_add(out, bias): trace graphs keep
#   PyTorch's W[out, in] with trans_y=True, which breaks TransformerPrune's importance and
#   pruning axes and puts channel-wise quantization scales on the wrong axis.
# - One layer_norm op per LayerNorm (ONNX graphs spell it as nine elementwise ops), because
#   PaddleSlim's pattern matcher finds FFN blocks by their layer_norm.
# - Reshapes with a constant `shape` attribute (ONNX graphs compute it at run time from
#   shape/gather/concat ops), which TransformerPrune edits when it drops heads.
# - Complete ops: squeeze2/unsqueeze2/reshape2/transpose2 with their XShape output; without
#   it merging the distillation teacher fails.
# - Parameters used once each: torch.onnx shares initializers that hold equal values.
# - Feeds named input_ids/attention_mask/token_type_ids.
# ----------------------------------------------------------------------------------------
XSHAPE_OPS = ("reshape2", "transpose2", "squeeze2", "unsqueeze2", "flatten_contiguous_range")
INT_DTYPES = (2, 3)  # paddle VarType INT32, INT64


def optional_input(op, slot):
    """The variables in an op's input slot; [] where the op desc has no such slot."""
    return op.input(slot) if slot in op.input_names else []


class ProgramEditor:
    """Small helpers over one block of a static program and the scope holding its weights."""

    def __init__(self, program, scope, place):
        self.program, self.scope, self.place = program, scope, place
        self.block = program.global_block()

    def consumers(self, name):
        return [op for op in self.block.ops if name in op.input_arg_names]

    def producer(self, name):
        for op in self.block.ops:
            if name in op.output_arg_names:
                return op
        return None

    def var(self, name):
        return self.block._find_var_recursive(name)

    def is_param(self, name):
        var = self.var(name)
        return var is not None and var.persistable and name not in ("feed", "fetch")

    def value(self, name):
        return np.array(self.scope.find_var(name).get_tensor())

    def set_value(self, name, array):
        self.scope.var(name).get_tensor().set(np.ascontiguousarray(array), self.place)
        self.var(name).desc.set_shape(list(array.shape))

    def replace_uses(self, old, new):
        for op in self.consumers(old):
            op._rename_input(old, new)

    def remove_ops(self, ops):
        doomed = {id(op) for op in ops}
        for idx in reversed(range(len(self.block.ops))):
            if id(self.block.ops[idx]) in doomed:
                self.block._remove_op(idx, sync=False)
        self.program._sync_with_cpp()

    def const_scalar(self, name):
        """The value of a one-element constant (fill_constant or parameter), else None."""
        op = self.producer(name)
        if op is not None and op.type == "fill_constant" and int(np.prod(op.attr("shape"))) == 1:
            return float(op.attr("value"))
        if self.is_param(name):
            array = self.value(name)
            if array.size == 1:
                return float(array.reshape(()))
        return None


def rename_feeds(ed, feed_names):
    """Name the feeds input_ids/attention_mask/token_type_ids, in the feed ops' column order."""
    feeds = sorted((op.attr("col"), op.output("Out")[0]) for op in ed.block.ops if op.type == "feed")
    for (_, old), new in zip(feeds, feed_names):
        if old != new:
            ed.block._rename_var(old, new)
    ed.program._sync_with_cpp()


def fold_copies(ed):
    """Drop assign-of-parameter ops and casts to the same dtype: use their input directly."""
    doomed = []
    for op in ed.block.ops:
        src = dst = None
        if op.type == "assign" and ed.is_param(op.input("X")[0]):
            src, dst = op.input("X")[0], op.output("Out")[0]
        elif op.type == "cast" and op.attr("in_dtype") == op.attr("out_dtype"):
            src, dst = op.input("X")[0], op.output("Out")[0]
        if src is not None:
            ed.replace_uses(dst, src)
            doomed.append(op)
    ed.remove_ops(doomed)


def unshare_params(ed):
    """Give each op its own copy of a parameter that several ops read."""
    readers = {}
    for op in list(ed.block.ops):
        for name in list(op.input_arg_names):
            if not ed.is_param(name):
                continue
            count = readers[name] = readers.get(name, 0) + 1
            if count > 1:
                var = ed.var(name)
                copy = ed.block.create_var(name=f"{name}.copy_{count - 1}", shape=var.shape, dtype=var.dtype,
                                           persistable=True)
                ed.set_value(copy.name, ed.value(name))
                op._rename_input(name, copy.name)


def fold_shape_arithmetic(ed, free_batch_of=None):
    """Turn run-time shape computations into constant attributes.

    ONNX graphs compute reshape targets as concat(gather(shape(x), i), constants). We
    evaluate those int vectors symbolically: an entry is an int or ("dim", var, axis). A
    reshape target entry that copies the same axis of a same-rank [batch, seq, ...] tensor
    becomes 0 ("copy this dim"), which keeps batch and sequence length dynamic. The
    converted model's parity at other shapes proves each such rewrite.

    Args:
        free_batch_of: for trace graphs, the traced batch size: a reshape whose constant
            target starts with it while its input does too gets 0 there instead.
    """
    vals = {}
    for op in ed.block.ops:
        t = op.type
        out = op.output_arg_names[0] if op.output_arg_names else None
        if t == "fill_constant" and op.attr("dtype") in INT_DTYPES and len(op.attr("shape")) == 1 \
                and not optional_input(op, "ShapeTensor") and not optional_input(op, "ValueTensor"):
            vals[out] = [int(op.attr("value"))] * op.attr("shape")[0]
        elif t == "shape":
            src = op.input("Input")[0]
            vals[out] = [d if d > 0 else ("dim", src, i) for i, d in enumerate(ed.var(src).shape)]
        elif t in ("cast", "assign", "squeeze2", "unsqueeze2", "reshape2") and op.input("X")[0] in vals:
            # int vectors pass through casts and 1-D reshapes ([1] around a gathered scalar)
            if t in ("cast", "assign") or len(vals[op.input("X")[0]]) == 1 \
                    or (t == "reshape2" and len(op.attr("shape")) == 1 and not optional_input(op, "Shape")):
                vals[op.output("Out")[0]] = vals[op.input("X")[0]]
        elif t == "gather" and op.input("X")[0] in vals and op.attr("axis") == 0:
            index = _int_vector(ed, vals, op.input("Index")[0])
            if index is not None and all(isinstance(i, int) for i in index):
                vals[out] = [vals[op.input("X")[0]][i] for i in index]
        elif t == "concat" and all(_int_vector(ed, vals, n) is not None for n in op.input("X")):
            vals[out] = [e for n in op.input("X") for e in _int_vector(ed, vals, n)]

        if t == "reshape2" and op.input("X")[0] not in vals:
            _fold_reshape_target(ed, vals, op, free_batch_of)
        elif t in ("squeeze2", "unsqueeze2") and optional_input(op, "AxesTensor"):
            axes = _int_vector(ed, vals, optional_input(op, "AxesTensor")[0])
            if axes is not None and all(isinstance(a, int) for a in axes):
                op.desc.set_input("AxesTensor", [])
                op._set_attr("axes", axes)
    ed.program._sync_with_cpp()


def _int_vector(ed, vals, name):
    if name in vals:
        return vals[name]
    if ed.is_param(name):
        array = ed.value(name)
        if array.dtype.kind == "i" and array.ndim == 1 and array.size <= 8:
            return [int(v) for v in array]
    return None


def _fold_reshape_target(ed, vals, op, free_batch_of):
    x_shape = ed.var(op.input("X")[0]).shape
    if optional_input(op, "Shape") or optional_input(op, "ShapeTensor"):
        if optional_input(op, "ShapeTensor"):
            return  # one tensor per entry: not produced by X2Paddle's BERT graphs
        target = vals.get(optional_input(op, "Shape")[0])
        if target is None:
            return
        shape = []
        for i, entry in enumerate(target):
            if isinstance(entry, int):
                shape.append(entry)
            elif entry[2] == i and i < len(x_shape) and len(ed.var(entry[1]).shape) == len(x_shape):
                shape.append(0)
            else:
                return
        op.desc.set_input("Shape", [])
        op._set_attr("shape", shape)
    elif free_batch_of is not None:
        shape = list(op.attr("shape"))
        if shape and shape[0] == free_batch_of and x_shape and x_shape[0] == free_batch_of:
            shape[0] = 0
            op._set_attr("shape", shape)


def fuse_layer_norm(ed):
    """Fold the nine-op LayerNorm of ONNX graphs back into one layer_norm op.

    mean = reduce_mean(x); d = x - mean; var = reduce_mean(d ** 2);
    y = d / sqrt(var + eps) * gamma + beta
    """
    def only_consumer(name, op_type):
        ops = ed.consumers(name)
        return ops[0] if len(ops) == 1 and ops[0].type == op_type else None

    doomed = []
    for mean in [op for op in ed.block.ops if op.type == "reduce_mean"]:
        if not mean.attr("keep_dim") or list(mean.attr("dim")) not in ([-1], [len(ed.var(mean.input("X")[0]).shape) - 1]):
            continue
        x = mean.input("X")[0]
        sub = only_consumer(mean.output("Out")[0], "elementwise_sub")
        if sub is None or sub.input("X")[0] != x:
            continue
        d = sub.output("Out")[0]
        users = {op.type: op for op in ed.consumers(d)}
        pow_, div = users.get("elementwise_pow"), users.get("elementwise_div")
        if len(users) != 2 or pow_ is None or div is None or ed.const_scalar(pow_.input("Y")[0]) != 2.0:
            continue
        var_mean = only_consumer(pow_.output("Out")[0], "reduce_mean")
        add_eps = var_mean and only_consumer(var_mean.output("Out")[0], "elementwise_add")
        sqrt = add_eps and only_consumer(add_eps.output("Out")[0], "sqrt")
        if sqrt is None or div.input("Y")[0] != sqrt.output("Out")[0]:
            continue
        eps = ed.const_scalar(add_eps.input("Y")[0])
        mul = only_consumer(div.output("Out")[0], "elementwise_mul")
        add = mul and only_consumer(mul.output("Out")[0], "elementwise_add")
        if eps is None or add is None or not ed.is_param(mul.input("Y")[0]) or not ed.is_param(add.input("Y")[0]):
            continue
        rank = len(ed.var(x).shape)
        y = add.output("Out")[0]
        stats = []
        for suffix in ("mean", "variance"):
            stats.append(ed.block.create_var(name=f"{y}.ln_{suffix}", shape=ed.var(x).shape[:rank - 1],
                                             dtype=ed.var(x).dtype))
        ed.block._insert_op(ed.block.ops.index(add), type="layer_norm",
                            inputs={"X": [x], "Scale": [mul.input("Y")[0]], "Bias": [add.input("Y")[0]]},
                            outputs={"Y": [y], "Mean": [stats[0]], "Variance": [stats[1]]},
                            attrs={"epsilon": eps, "begin_norm_axis": rank - 1})
        doomed += [mean, sub, pow_, var_mean, add_eps, sqrt, div, mul, add]
    ed.remove_ops(doomed)


def canonical_linears(ed):
    """matmul_v2(x, W[out, in], trans_y=True) -> matmul_v2(x, W[in, out]); bias on the right."""
    for op in ed.block.ops:
        if op.type == "matmul_v2" and ed.is_param(op.input("Y")[0]) and op.attr("trans_y") \
                and len(ed.var(op.input("Y")[0]).shape) == 2:
            weight = op.input("Y")[0]
            ed.set_value(weight, ed.value(weight).T)
            op._set_attr("trans_y", False)
        elif op.type == "elementwise_add" and ed.is_param(op.input("X")[0]) and not ed.is_param(op.input("Y")[0]):
            bias, act = op.input("X")[0], op.input("Y")[0]
            op.desc.set_input("X", [act])
            op.desc.set_input("Y", [bias])
            op._set_attr("axis", -1)


def complete_ops(ed):
    """Give reshape2/transpose2/(un)squeeze2 the XShape output Paddle's own layers create."""
    for op in ed.block.ops:
        if op.type in XSHAPE_OPS and not ("XShape" in op.output_names and op.output("XShape")):
            x = ed.var(op.input("X")[0])
            xshape = ed.block.create_var(name=f"{op.output('Out')[0]}.xshape", shape=[0] + list(x.shape),
                                         dtype=x.dtype)
            op.desc.set_output("XShape", [xshape.name])
    ed.program._sync_with_cpp()


def drop_dead_ops(ed, fetch_names):
    """Remove ops whose outputs reach no fetch target, then the variables nobody uses."""
    live = set(fetch_names)
    doomed = []
    for op in reversed(ed.block.ops):
        if op.type in ("feed", "fetch") or set(op.output_arg_names) & live:
            live.update(op.input_arg_names)
        else:
            doomed.append(op)
    ed.remove_ops(doomed)
    used = {n for op in ed.block.ops for n in op.input_arg_names + op.output_arg_names}
    for name in list(ed.block.vars):
        if name not in used and name not in ("feed", "fetch"):
            ed.block._remove_var(name, sync=False)
    ed.program._sync_with_cpp()


def infer_shapes(ed, feed_shapes):
    for name, shape in feed_shapes.items():
        ed.var(name).desc.set_shape(shape)
    for op in ed.block.ops:
        if op.type not in ("feed", "fetch"):
            op.desc.infer_shape(ed.block.desc)
    ed.program._sync_with_cpp()


def rewrite_program(program, scope, place, method, max_seq_length):
    """Apply the graph rewrite in place; returns the fetch variable names."""
    ed = ProgramEditor(program, scope, place)
    rename_feeds(ed, INPUT_NAMES)
    fetch_names = [op.input("X")[0] for op in ed.block.ops if op.type == "fetch"]
    fold_copies(ed)
    unshare_params(ed)
    fold_shape_arithmetic(ed, free_batch_of=TRACE_BATCH if method == "trace" else None)
    fuse_layer_norm(ed)
    canonical_linears(ed)
    complete_ops(ed)
    drop_dead_ops(ed, fetch_names)
    seq = max_seq_length if method == "trace" else -1
    infer_shapes(ed, {name: [-1, seq] for name in INPUT_NAMES})
    return fetch_names


def rewrite_and_save(x2paddle_prefix, out_prefix, method, max_seq_length):
    """Load X2Paddle's inference model, rewrite its graph, save it as out_prefix.pdmodel/.pdiparams."""
    import paddle

    paddle.enable_static()
    place = paddle.CPUPlace()
    scope = paddle.static.Scope()
    exe = paddle.static.Executor(place)
    with paddle.static.scope_guard(scope):
        program, _, fetch_targets = paddle.static.load_inference_model(x2paddle_prefix, exe)
        fetch_names = rewrite_program(program, scope, place, method, max_seq_length)
        block = program.global_block()
        # save_inference_model appends its own scale(1.0) per fetch; drop X2Paddle's so there is one.
        last = block.ops[-2] if block.ops[-1].type == "fetch" else None
        fetch_vars = [block.var(n) for n in fetch_names]
        if last is not None and last.type == "scale" and last.attr("scale") == 1.0 and last.attr("bias") == 0.0 \
                and len(fetch_names) == 1 and last.output("Out")[0] == fetch_names[0]:
            fetch_vars = [block.var(last.input("X")[0])]
        # clip_extra=False: clipping drops squeeze2/unsqueeze2's XShape, which Paddle 2.6 lists as an
        # "extra" output, yet PaddleSlim's distillation merge and squeeze2_grad need it.
        paddle.static.save_inference_model(out_prefix, [block.var(n) for n in INPUT_NAMES], fetch_vars, exe,
                                           program=program, clip_extra=False)
    paddle.disable_static()


# ----------------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------------
def parity_shapes(method, max_seq_length):
    """Shapes checked after conversion: other batch sizes always, other lengths for onnx."""
    shapes = [(3, max_seq_length), (1, max_seq_length)]
    if method == "onnx":
        shapes += [(2, max(2, max_seq_length // 2)), (4, max_seq_length + 3)]
    return shapes


def check_parity(wrapper, config, prefix, method, max_seq_length, rng):
    feed_names = files.read_paddle_model(prefix + ".pdmodel").feeds
    run = predictors.cpu_predictor(prefix)
    if sorted(feed_names) != sorted(INPUT_NAMES):
        raise RuntimeError(f"converted model has feeds {feed_names}, expected {list(INPUT_NAMES)}")
    report = []
    for batch, seq in parity_shapes(method, max_seq_length):
        if seq > config.max_position_embeddings:
            continue
        feeds = make_inputs(config, batch, seq, rng)
        diff = float(np.abs(run(feeds) - torch_logits(wrapper, feeds)).max())
        report.append({"batch_size": batch, "seq_len": seq, "max_abs_diff": diff})
    return {"atol": PARITY_ATOL, "max_abs_diff": max(r["max_abs_diff"] for r in report), "checks": report}


def library_versions():
    import paddle
    import torch
    import transformers
    import x2paddle

    versions = {"paddlepaddle": paddle.__version__, "x2paddle": x2paddle.__version__,
                "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import onnx
        versions["onnx"] = onnx.__version__
    except ImportError:
        pass
    return versions


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()
    logger.info("arguments: %s", json.dumps(vars(args)))
    local_input = args.model_name_or_path if files.is_local(args.model_name_or_path) else None
    save_dir = files.check_save_dir(args.save_dir, inputs=[local_input], overwrite=args.overwrite)

    import torch

    torch.manual_seed(args.seed)
    model, tokenizer = load_torch_model(args.model_name_or_path, args.num_labels)
    config = model.config
    if args.max_seq_length > config.max_position_embeddings:
        raise cli.InputError(f"--max_seq_length {args.max_seq_length} is above the model's position limit "
                             f"({config.max_position_embeddings}): pass at most {config.max_position_embeddings}")
    wrapper = logits_module(model)
    rng = np.random.default_rng(args.seed)

    with files.building(save_dir, "convert", args.overwrite) as work:
        start = time.perf_counter()
        batch = TRACE_BATCH if args.method == "trace" else 2
        example = make_inputs(config, batch, args.max_seq_length, rng)
        logger.info("converting with X2Paddle (%s)", args.method)
        if args.method == "trace":
            x2p = x2paddle_trace(wrapper, example, os.path.join(work.root, "x2paddle"))
        else:
            x2p = x2paddle_onnx(wrapper, example, work.root, args.opset)
        logger.info("rewriting the graph")
        rewrite_and_save(x2p, os.path.join(work.out, "model"), args.method, args.max_seq_length)
        seconds = time.perf_counter() - start
        logger.info("checking parity against PyTorch")
        parity = check_parity(wrapper, config, os.path.join(work.out, "model"), args.method, args.max_seq_length,
                              rng)
        if not parity["max_abs_diff"] <= PARITY_ATOL:
            raise RuntimeError(f"parity check failed: max abs diff {parity['max_abs_diff']:.3g} > {PARITY_ATOL} "
                               f"({parity['checks']}); nothing was written")
        tokenizer.save_pretrained(work.out)
        config.save_pretrained(work.out)
        seq = args.max_seq_length if args.method == "trace" else -1
        result = {
            "source": args.model_name_or_path,
            "method": args.method,
            "opset": args.opset if args.method == "onnx" else None,
            "max_seq_length": args.max_seq_length,
            "num_labels": config.num_labels,
            "feeds": [{"name": n, "shape": [-1, seq], "dtype": "int64"} for n in INPUT_NAMES],
            "parity": parity,
            "convert_seconds": round(seconds, 2),
            "versions": library_versions(),
        }
        cli.write_json(os.path.join(work.out, "convert.json"), result)
    print(f"converted {args.model_name_or_path} -> {args.save_dir} ({args.method}): "
          f"max abs diff {parity['max_abs_diff']:.2e} vs PyTorch, {seconds:.1f} s")
    return result


if __name__ == "__main__":
    cli.cli(main)
