"""Every fix these scripts need for PaddleSlim 2.6 and Paddle 2.6 bugs, in one place.

    with workarounds.paddleslim_fixed(program, scratch, skip_tensor_list):    # run.py
        AutoCompression(model_dir="model", ...).compress()
    predictors.optimized_int8_model(model, threads, int8_ops)                # int8 on oneDNN: for_onednn_int8,
                                                                             # then onednn_fc_weight_scales

Each fix says the symptom, the upstream file, and what it does. `paddleslim_fixed` applies every
fix AutoCompression needs and undoes every patch on exit, so a second compression in one process
starts clean. (The system-zlib preload against Paddle's bundled zlib sits in cli.py: it must run
before anything imports paddle.) The README's "Upstream bugs" section lists them for users.
"""
import collections
import contextlib
import functools
import logging
import os

import numpy as np

import cli

logger = logging.getLogger("workarounds")


@contextlib.contextmanager
def mkl_avx2_on_amd(cpuinfo="/proc/cpuinfo"):
    """MKL_DEBUG_CPU_TYPE=5 on an AMD CPU with AVX2, unless it is set: Paddle's training matmuls 3x faster.

    Symptom: on an AMD EPYC (2 cores), compression trained at about 34 s a step (SST-2, distill +
    QAT, batch 32 at length 128), matmul_v2 and its gradient 60 % of it (paddle.profiler). Paddle
    2.6's CPU kernels call its bundled MKL (paddle/libs/libmklml_intel.so, 2019.0.5), which gives a
    CPU that is not Intel's its generic code path: 16-20 GFLOPS on one core for [32, 128, 384] x
    [384, 1536]; with MKL_DEBUG_CPU_TYPE=5 (honoured up to MKL 2020.0, read at its first call)
    48-56 GFLOPS, and that QAT step took about 17 s instead of 34 (both beside another job on the
    machine). Intel CPUs are left alone (the variable would hold one with AVX-512 to AVX2).

    The variable is removed on exit: MKL keeps the path it read, and processes started later
    (infer.py's latency runs in the benchmarks) do not inherit it. With it, infer.py's fp32 latency
    here was about 5 % worse (b32 p50, medians of 8 runs each: 801 and 757 ms).

    Yields:
        whether it set the variable.
    """
    try:
        with open(cpuinfo) as f:
            head = f.read(1 << 16)
    except OSError:  # not Linux
        head = ""
    fields = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
    fields = {k.strip(): v.split() for k, v in fields.items()}
    if ("MKL_DEBUG_CPU_TYPE" in os.environ or fields.get("vendor_id") != ["AuthenticAMD"]
            or "avx2" not in fields.get("flags", [])):
        yield False
        return
    os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
    try:
        yield True
    finally:
        os.environ.pop("MKL_DEBUG_CPU_TYPE", None)


@contextlib.contextmanager
def patched(owner, name, value):
    """owner.name = value for the duration."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def wrapped(owner, name, wrap):
    """owner.name = wrap(owner.name) for the duration, read when entered: patches of one name stack."""
    with patched(owner, name, wrap(getattr(owner, name))):
        yield


def chain_post_quant_to_previous_stage():
    """Post-training quantization starts from the previous strategy's output.

    Symptom: prune-then-quantize (the document's headline, and what AutoCompression picks for a
    transformer) silently quantized the unpruned model. PaddleSlim 2.6
    (auto_compression/compressor.py, single_strategy_compress) passes self.updated_model_dir, the
    *input* model, to 'quant_post' and 'ptq_hpo', even when an earlier strategy wrote its model to
    tmp_dir/strategy_<i>. Fix: point updated_model_dir at that model first.
    """
    from paddleslim.auto_compression.compressor import AutoCompression

    def wrap(stage):
        def single_strategy_compress(self, strategy, config, strategy_idx, train_config):
            if strategy in ("quant_post", "ptq_hpo") and strategy_idx > 0:
                self.updated_model_dir = os.path.join(self.tmp_dir, f"strategy_{strategy_idx}")
            return stage(self, strategy, config, strategy_idx, train_config)
        return single_strategy_compress

    return wrapped(AutoCompression, "single_strategy_compress", wrap)


def final_evaluation_left_to_caller():
    """After post-training quantization, the caller scores the saved model, not PaddleSlim.

    Symptom: the PTQ of a BERT-base-sized model peaked at 8.0 GiB resident, at its very end, and
    every PTQ run scored the dev set twice. PaddleSlim 2.6 (auto_compression/compressor.py,
    compress) loads the model it saved and runs eval_callback over the dev set once more whenever
    its last stage trained nothing (final_metric < 0), while the executor's scope still holds the
    model it quantized and its calibration state; run.py then scores the saved model again as
    infer.py deploys it. Fix: after such a last stage, PaddleSlim gets no eval_callback, so it
    skips that evaluation; run.py's "eval after" is the metric.
    """
    from paddleslim.auto_compression.compressor import AutoCompression

    def wrap(stage):
        def single_strategy_compress(self, strategy, config, strategy_idx, train_config):
            stage(self, strategy, config, strategy_idx, train_config)
            if strategy_idx == len(self._strategy) - 1 and self.final_metric < 0.0 and self.eval_function is not None:
                logger.info("%s done; the saved model is scored once, by the caller, as it deploys", strategy)
                self.eval_function = None
        return single_strategy_compress

    return wrapped(AutoCompression, "single_strategy_compress", wrap)


def check_later_stages(compressor):
    """Say how PaddleSlim trains a quantization stage that follows another, and refuse its 100 epochs.

    Symptom: with more than one strategy, a later QAT stage trained a tenth as long, or for 100
    epochs, without a word. PaddleSlim 2.6 (auto_compression/compressor.py,
    _get_final_train_config) gives each later stage whose name holds "qat" or "ptq"
    int(train_iter * 0.1) steps and learning_rate * 0.1; a train_iter that rounds to 0 is falsy in
    _start_train, which then runs `epochs or 100` epochs over the whole training set. Fix: log the
    steps and learning rate in one line, refuse the 0.
    """
    first = compressor.train_config[0]
    for index, stage in enumerate(compressor._strategy[1:], start=1):
        if stage.startswith("ptq") or not ("qat" in stage or "ptq" in stage):
            continue  # post-training quantization trains nothing
        config = compressor.train_config[index]
        if first.train_iter and not config.train_iter:
            raise cli.InputError(f"TrainConfig.train_iter {first.train_iter}: PaddleSlim gives the {stage} stage "
                                 "a tenth of it, which rounds to 0 and then means 100 epochs: set train_iter to 10 "
                                 "or more")
        logger.info("PaddleSlim trains stage %d (%s) for %s at learning rate %s: a tenth of TrainConfig's",
                    index + 1, stage, f"{config.train_iter} steps" if config.train_iter else f"{config.epochs} epochs",
                    config.learning_rate)


def later_stages_checked(ran):
    """check_later_stages on every AutoCompression before it compresses; the strategies it runs go into `ran`.

    (PaddleSlim keeps the strategies it picked in a private list, compressor._strategy.)
    """
    from paddleslim.auto_compression.compressor import AutoCompression

    def wrap(compress):
        def checked_compress(self):
            check_later_stages(self)
            ran.extend(self._strategy)
            return compress(self)
        return checked_compress

    return wrapped(AutoCompression, "compress", wrap)


def uniform_histograms():
    """Calibrate `hist` and `KL` with numpy's uniform-bin histogram (several times faster).

    Symptom: hist/KL calibration spent most of its time in np.histogram. Paddle 2.6
    (paddle/static/quantization/post_training_quantization.py, _sample_histogram) passes each
    activation's 2049 bin edges to np.histogram, which then bisects every value into them. The
    edges are uniform (np.histogram([], bins, range) made them), so giving numpy the bin count and
    range counts the same values into the same bins (floating-point rounding at an edge aside)
    without the search. Degenerate edges (a constant -3.4e38 mask) are counted as Paddle does.
    """
    from paddle.static.quantization import post_training_quantization as ptq

    def _sample_histogram(self):
        for var_name in self._quantized_act_var_name:
            tensor = ptq.utils.load_variable_data(self._scope, var_name)
            if tensor.size == 0 or var_name not in self._sampling_act_histogram:
                self._zero_size_var_names.add(var_name)
                continue
            counts, edges = self._sampling_act_histogram[var_name]
            if np.isfinite(edges[-1] - edges[0]) and np.all(np.diff(edges) > 0):
                counts += np.histogram(np.abs(tensor), bins=len(edges) - 1, range=(edges[0], edges[-1]))[0]
            else:
                counts += np.histogram(np.abs(tensor), bins=edges)[0]

    return patched(ptq.PostTrainingQuantization, "_sample_histogram", _sample_histogram)


@contextlib.contextmanager
def post_quant_skip_list(skip_tensor_list):
    """QuantPost.skip_tensor_list keeps the named tensors' layers in fp32, as PaddleSlim documents.

    Symptom: the list was silently ignored and every layer quantized. PaddleSlim 2.6
    (auto_compression/compressor.py, single_strategy_compress) passes skip_tensor_list only to
    quant_recon_static (QuantPost.recon_level set), never to quant_post, the default, and
    HyperParameterOptimization's search (quant/post_quant_hpo.py, quantize and quant_post_hpo)
    calls quant_post without it too. Fix: bind it to quant_post in both modules.
    """
    from paddleslim.auto_compression import compressor
    from paddleslim.quant import post_quant_hpo

    with contextlib.ExitStack() as stack:
        if skip_tensor_list:
            for module in (compressor, post_quant_hpo):
                stack.enter_context(wrapped(module, "quant_post", lambda quant_post: functools.partial(
                    quant_post, skip_tensor_list=skip_tensor_list)))
        yield


def calibration_loader(loader, batch_size):
    """`loader` (a paddle.io.DataLoader) over the same rows, in batches of `batch_size`.

    Its batch sampler draws the same permutation of the rows as the loader's would from the same
    numpy state, so with a batch size that divides the loader's, batch_nums x batch_size
    calibration rows are the same rows.
    """
    import paddle

    sampler = loader.batch_sampler
    if sampler.batch_size == batch_size:
        return loader
    shuffle = isinstance(sampler.sampler, paddle.io.RandomSampler)
    return paddle.io.DataLoader(loader.dataset, collate_fn=loader.collate_fn, return_list=loader.return_list,
                                batch_sampler=paddle.io.BatchSampler(loader.dataset, batch_size=batch_size,
                                                                     shuffle=shuffle, drop_last=sampler.drop_last))


def post_quant_batch_size():
    """QuantPost.batch_size is the calibration batch, as PaddleSlim documents it.

    Symptom: QuantPost.batch_size was silently ignored, and calibration ran on Global.batch_size
    batches; a BERT-base's executor grew by about 6 GB on its first calibration batch of 32 x 128
    (every activation of the forward pass held at once). PaddleSlim 2.6
    (auto_compression/compressor.py, single_strategy_compress) hands quant_post the training
    loader, and Paddle's PostTrainingQuantization reads batch_size only for a sample_generator.
    Fix: quant_post gets the training rows in batches of QuantPost.batch_size (calibration_loader),
    so batch_nums counts those, and a smaller batch bounds the memory.
    """
    from paddleslim.auto_compression import compressor as module

    def wrap(original):
        def quant_post(*args, data_loader=None, batch_size=None, **kwargs):
            if data_loader is not None and batch_size:
                data_loader = calibration_loader(data_loader, batch_size)
            return original(*args, data_loader=data_loader, batch_size=batch_size, **kwargs)
        return quant_post

    return wrapped(module, "quant_post", wrap)


def regression_prune_loss_per_element():
    """TransformerPrune scores the heads of a regression model (STS-B).

    Symptom: pruning STS-B failed before it began: "The reduce dim index 0 should be in the range
    [-dimension(X), dimension(X)]". PaddleSlim 2.6 (auto_compression/transformer_pruner.py,
    _program_add_mask) builds kldiv_loss with reduction "mean" for float labels, a 0-D loss, and
    takes its mean again, whose gradient Paddle 2.6 refuses. Fix: reduction "none"; the mean that
    follows gives the same loss.
    """
    from paddleslim.auto_compression import transformer_pruner

    def kl_div_op(block, logits, labels):
        loss = block.create_var(name=f"{logits.name}.kl_div_per_element", shape=logits.shape, dtype=logits.dtype)
        block.append_op(type="kldiv_loss", inputs={"X": logits, "Target": labels}, outputs={"Loss": loss},
                        attrs={"reduction": "none"})
        return loss

    return patched(transformer_pruner, "kl_div_op", kl_div_op)


def names_after(program):
    """A unique-name generator whose counters start past every numbered name in `program` (a ProgramDesc).

    Symptom: "Generated graph shouldn't contain cycle" in PTQ after pruning (QNLI, whenever the
    pruned model's first evaluation was its best). Paddle's save_inference_model appends `scale`
    ops named save_infer_model/scale_<i> on every save; a model saved once already (every
    converted model) holds save_infer_model/scale_0.tmp_0, and when ACT saves its pruned model
    with a counter that starts at 0 the new scale op writes that same name in place;
    AddQuantDequantForInferencePass (Paddle 2.6, onnx_format) then links the op to its own output.
    """
    from paddle.base.unique_name import UniqueNameGenerator

    generator = UniqueNameGenerator()
    for var in program.blocks[0].vars:
        key, sep, count = var.name.rpartition("_")
        if sep and count.isdigit():
            generator.ids[key] = max(generator.ids[key], int(count) + 1)
    return generator


class _NodesById(set):
    """A set of graph nodes that iterates in node-id order (the order the graph made them)."""

    def __iter__(self):
        return iter(sorted(set.__iter__(self), key=lambda node: node.id()))


def ir_op_nodes_in_creation_order():
    """IrGraph.all_op_nodes iterates in node-id order, so that distill + QAT trains the same model every run.

    Symptom: with the same config and seed, distill + QAT trained other weights each run (RTE dev
    58.48 and 59.57; a tiny BERT's params differed from the second step on), where pruning and PTQ
    are the same every run. paddle/base/framework.py's IrGraph.all_op_nodes returns a set of new
    IrOpNode wrappers, hashed by id(), so its order changes from run to run;
    QuantizationTransformPassV2.apply (paddle/static/quantization/quantization_pass.py) quantizes
    the ops in that order, and where one activation feeds several matmuls (a layer's q, k and v),
    the first one visited gets QuantAware.use_pact's clip, and _insert_func rewires that matmul's
    gradient op through it; the others reuse its quantized output. Which weight's gradient went
    through PACT changed from run to run. With the nodes in id order it is the first consumer in
    the program, every run.
    """
    from paddle.base.framework import IrGraph

    def wrap(all_op_nodes):
        @functools.wraps(all_op_nodes)
        def in_creation_order(self):
            return _NodesById(all_op_nodes(self))
        return in_creation_order

    return wrapped(IrGraph, "all_op_nodes", wrap)


@contextlib.contextmanager
def hpo_search_reset():
    """PaddleSlim's hyper-parameter search starts from no best trial.

    Symptom: a second HPO run in one process saved no model, then failed on the missing folder.
    PaddleSlim 2.6 (paddleslim/quant/post_quant_hpo.py) keeps the best loss in a module global,
    g_min_emd_loss, that only import resets. Fix: reset it.
    """
    from paddleslim.quant import post_quant_hpo

    post_quant_hpo.emd_loss_init()
    yield


@contextlib.contextmanager
def working_folder(folder):
    """Run in `folder`: PaddleSlim writes quant_model_tmp/ and smac3-output_*/ into the working folder.

    HPO also copies its best model with os.system("cp -r quant_model_tmp <save_dir>/...")
    (paddleslim/quant/post_quant_hpo.py): with every path it gets relative to this folder, a
    user's path with a space or `;` in it never reaches that shell.
    """
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def static_mode(program):
    """Static-graph mode, fresh default programs, a scope of its own and names past those of `program` (a ProgramDesc).

    Symptom: a second compression in one process (benchmarks/reproduce.py) collided with the
    first one's parameters, e.g. a 2-label head against STS-B's 1-output head: TransformerPrune
    creates parameters in the default startup program. See names_after for the names. The scope,
    which holds every variable PaddleSlim loads and calibrates, is released on exit.
    """
    import paddle

    paddle.enable_static()
    try:
        with paddle.static.program_guard(paddle.static.Program(), paddle.static.Program()), \
                paddle.static.scope_guard(paddle.static.Scope()), \
                paddle.utils.unique_name.guard(names_after(program)):
            yield
    finally:
        paddle.disable_static()


def weight_dequantizers(block, scope):
    """(op, int8 weight, scale) of each dequantize_linear that reads a symmetric int8 weight, last op first."""
    for index in reversed(range(len(block.ops))):
        op = block.ops[index]
        if op.type != "dequantize_linear" or not block.var(op.input("X")[0]).persistable:
            continue
        weight, scale, zero_point = (np.array(scope.find_var(op.input(n)[0]).get_tensor())
                                     for n in ("X", "Scale", "ZeroPoint"))
        if np.any(zero_point != 0) or weight.dtype != np.int8:
            continue  # not PaddleSlim's symmetric int8 weight: left to the runtime
        yield index, op, weight, scale


def dequantize_weights(block, scope):
    """Turn the quantized model's int8 weights back into fp32 (a predictors.edited_model edit, for oneDNN).

    Symptom: a QAT MiniLM lost points of dev metric under `infer.py --int8`. Paddle 2.6's quant_dequant_mkldnn_pass, which scales a weight along the wrong axis
    when the weight is square (ConvertFromINT8ToFP32 in quant_dequant_mkldnn_pass.cc takes the
    conv-filter branch whenever the scale count equals dim 0): PaddleSlim stores matmul weights
    [in, out] with one scale per output channel, so every q/k/v/output projection of an unpruned
    BERT got its input rows scaled instead, and a QAT MiniLM lost points of dev metric under
    `--int8` (pruned weights, no longer square, were spared). Here each weight's
    dequantize_linear is applied once, exactly as the fake-quant graph computes it
    (w_int8 * scale / (2^(bits-1) - 1) along quant_axis), and removed; the pass then has no weight
    to convert, and oneDNN quantizes the fc weights per output channel itself from these values.
    Activation quantize/dequantize pairs, and with them the int8 input scales, are left as they are.
    """
    import paddle

    for index, op, weight, scale in weight_dequantizers(block, scope):
        name, out = op.input("X")[0], op.output("Y")[0]
        axis = op.attr("quant_axis")
        shape = [-1 if i == axis else 1 for i in range(weight.ndim)] if scale.size > 1 else [1] * weight.ndim
        fp32 = weight.astype(np.float32) * scale.reshape(shape) / (2 ** (op.attr("bit_length") - 1) - 1)
        block.var(name).desc.set_dtype(paddle.base.core.VarDesc.VarType.FP32)
        scope.find_var(name).get_tensor().set(fp32, paddle.CPUPlace())
        for consumer in block.ops[index + 1:]:
            consumer._rename_input(out, name)
        block._remove_op(index)


def weight_input(op, producer, weights):
    """A matmul's input that is a weight (in `weights`, the persistable names), or a dequantize_linear's output
    of one, in a saved quantized model (producer: {name: the op that writes it}); None: two activations."""
    for name in op.input_arg_names:
        source = producer.get(name)
        if name in weights or (source is not None and source.type == "dequantize_linear"
                               and source.input("X")[0] in weights):
            return name
    return None


def skipped_layers_kept_fp32(block, scope):
    """Drop the activation scales no quantized linear layer reads (a predictors.edited_model edit, for oneDNN).

    Symptom: the layers QuantPost.skip_tensor_list keeps in fp32 ran in int8 under `infer.py
    --int8` anyway: with only q, k and v quantized, all 38 linear layers of a MiniLM became
    oneDNN int8 fc ops. PaddleSlim's onnx_format models carry a quantize/dequantize_linear pair
    on the output of nearly every op (Paddle 2.6, AddQuantDequantForInferencePass in
    static/quantization/quantization_pass.py, so that each activation's scale travels with the
    graph); quant_dequant_mkldnn_pass turns every pair into a scale, compute_propagate_scales_mkldnn_pass
    computes a scale for every fc weight, and cpu_quantize_pass then quantizes every fc whose
    input has a scale. Here each activation pair is removed (its readers read the fp32 value)
    unless a linear layer with an int8 weight, or a matmul of two activations, reads it.
    """
    producer = {name: op for op in block.ops for name in op.output_arg_names}
    readers = collections.Counter(name for op in block.ops for name in op.input_arg_names)
    weights = {v.name for v in block.vars.values() if v.persistable}
    keep = set()
    for op in block.ops:
        if op.type in ("matmul", "matmul_v2"):
            weight = weight_input(op, producer, weights)
            if weight is None or weight not in weights:  # two activations, or a quantized weight
                keep.update(n for n in op.input_arg_names if n != weight)
    for index in reversed(range(len(block.ops))):
        op = block.ops[index]
        out = op.output("Y")[0] if op.type == "dequantize_linear" else None
        if out is None or op.input("X")[0] in weights or out in keep:
            continue
        quantize = producer.get(op.input("X")[0])
        if quantize is None or quantize.type != "quantize_linear":
            continue
        if readers[quantize.output("Y")[0]] > 1:
            continue  # its int8 value has another reader
        source = quantize.input("X")[0]
        for reader in block.ops[index + 1:]:
            reader._rename_input(out, source)
        block._remove_op(index)
        block._remove_op(block.ops.index(quantize))


def int8_weight_peaks(block, scope, weight_bits=8):
    """{weight name: largest |value| per column} of the linear layers oneDNN will run in int8 (a
    quantized input: the output of a dequantize_linear; a weight stored [in, out]), for
    onednn_fc_weight_scales. weight_bits 7: these weights are first moved, in place, to every
    other step of their int8 grid (half to even)."""
    import paddle

    producer = {name: op for op in block.ops for name in op.output_arg_names}
    persistable = {v.name for v in block.vars.values() if v.persistable}
    step, peaks = 2 ** (8 - weight_bits), {}
    for op in block.ops:
        if op.type not in ("matmul", "matmul_v2") or op.attr("trans_y" if op.type == "matmul_v2" else "transpose_Y"):
            continue
        x, weight = op.input("X")[0], op.input("Y")[0]
        if weight not in persistable or producer.get(x) is None or producer[x].type != "dequantize_linear":
            continue
        tensor = scope.find_var(weight).get_tensor()
        value = np.array(tensor)
        peak = np.abs(value).max(axis=0)
        peak = np.where(peak > 0, peak, 1.0).astype(np.float32)
        if step > 1:
            coarse = np.round(np.round(value * 127 / peak) / step) * step * peak / 127
            tensor.set(np.ascontiguousarray(coarse, dtype=np.float32), paddle.CPUPlace())
        peaks[weight] = peak
    return peaks


def onednn_fc_weight_scales(program, peaks, weight_bits=8):
    """Give each oneDNN int8 fc its weight's scales per output channel, one per column: the saved
    program (bytes) Paddle's oneDNN int8 passes made, edited (predictors.optimized_int8_model).

    Symptom: a PTQ MiniLM scored 2.2 points of STS-B pearson lower under `infer.py --int8` than its
    fake-quant graph (78.92 against 81.10), most of it in the FFN layers. Paddle 2.6's
    compute_propagate_scales_mkldnn_pass computes each fc weight's per-output-channel scales itself
    (ComputeVarScales -> GetScales, axis 0) and reads the [in, out] weight as if it were stored
    [out, in]: output channel i gets the largest of the i-th run of `in` consecutive values, not of
    its column, so oneDNN's weight reorder clips every column whose largest value is larger (a toy
    fc's int8 output matches that reading exactly). cpu_quantize_pass then writes those scales,
    times 127, into the fc's Scale_weights attribute. Here, in the program the passes produced
    (saved with enable_save_optim_model, run afterwards without passes), each int8 fc's
    Scale_weights becomes 127 / max|W[:, i]| per column i (peaks: int8_weight_peaks, taken before
    the passes): oneDNN then quantizes each column on the model's own grid (PaddleSlim's
    per-channel int8 values, exactly), with no op added. Only the program is edited: the weights
    are not loaded again.

    weight_bits 7 (CPUs without VNNI/AMX, whose int8 kernels add pairs of u8*s8 products in 16
    bits and saturate): the scales are halved, for the weights int8_weight_peaks moved to every
    other step of that grid, as OpenVINO does there.
    """
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc.FromString(program)
    for op in desc.blocks[0].ops:
        attrs = {a.name: a for a in op.attrs}
        if op.type != "fc" or "Scale_weights" not in attrs or attrs["mkldnn_data_type"].s != "int8":
            continue
        weight = next(arg.arguments[0] for arg in op.inputs if arg.parameter == "W")
        if weight not in peaks:
            raise RuntimeError(f"oneDNN runs the fc reading {weight} in int8, but no int8 linear layer of the "
                               "model reads it: its weight scales cannot be set (workarounds.onednn_fc_weight_scales)")
        attrs["Scale_weights"].floats[:] = [float(v) for v in 127.0 / 2 ** (8 - weight_bits) / peaks[weight]]
    return desc.SerializeToString()


def for_onednn_int8(block, scope, weight_bits=8, peaks=None):
    """The edits a quantized model needs before Paddle's oneDNN int8 passes run it
    (predictors.optimized_int8_model); the int8 layers' weight peaks go into `peaks`."""
    skipped_layers_kept_fp32(block, scope)
    dequantize_weights(block, scope)
    (peaks if peaks is not None else {}).update(int8_weight_peaks(block, scope, weight_bits))


# The op_namescope that Paddle's quantization passes leave in fp32 (QuantAware.not_quant_pattern's default;
# post_training_quantization.py tags the ops of its skip_tensor_list with it).
SKIP_QUANT = "skip_quant"


def with_skip_quant(patterns):
    """QuantAware.not_quant_pattern (a list, a string, or None for PaddleSlim's default) with SKIP_QUANT in it."""
    patterns = [SKIP_QUANT] if patterns is None else [patterns] if isinstance(patterns, str) else list(patterns)
    return patterns + ([] if SKIP_QUANT in patterns else [SKIP_QUANT])


def teacher_kept_fp32():
    """Quantization-aware training leaves the distillation teacher fp32.

    Symptom: in distill + QAT, the teacher's matmuls read fake-quantized activations (the input of
    every linear layer, and both inputs of attention's Q.K^T and softmax.V), 8 bits per tensor at
    moving-average scales, so the soft labels the student learned from were not the fp32 model's.
    PaddleSlim 2.6 (dist/single_distiller.py, merge) marks each teacher op with the attribute
    skip_quant; Paddle 2.6's QuantizationTransformPassV2 honours it (the teacher's weights stay
    fp32), but AddQuantDequantPassV2 (static/quantization/quantization_pass.py) reads only
    op_namescope against not_quant_pattern, and quantizes the activation inputs of every matmul not
    already quantized with a weight. Fix: before quant_aware
    (auto_compression/create_compressed_program.py), each op marked skip_quant gets the op_namescope
    SKIP_QUANT too, and the not_quant_pattern quant_aware gets includes it.
    """
    from paddleslim.auto_compression import create_compressed_program

    def wrap(quant_aware):
        def teacher_skipped(program, place, config=None, *args, **kwargs):
            marked = [op for block in program.blocks for op in block.ops
                      if op.has_attr("skip_quant") and op.attr("skip_quant")]
            for op in marked:
                op._set_attr("op_namescope", SKIP_QUANT)
            if marked and config is not None:
                config = {**config, "not_quant_pattern": with_skip_quant(config.get("not_quant_pattern"))}
            return quant_aware(program, place, config, *args, **kwargs)
        return teacher_skipped

    return wrapped(create_compressed_program, "quant_aware", wrap)


@contextlib.contextmanager
def paddleslim_fixed(program, scratch, skip_tensor_list=None):
    """Every fix above, for one AutoCompression run in the working folder `scratch`.

    Args:
        program: the input model's ProgramDesc (files.read_program).
        scratch: the working folder PaddleSlim gets; its paths should be relative to it.
        skip_tensor_list: QuantPost.skip_tensor_list, if any.
    Yields:
        a list that holds, once compress() has started, the strategies PaddleSlim runs.
    """
    ran = []
    with contextlib.ExitStack() as stack:
        for fix in (static_mode(program), working_folder(scratch), hpo_search_reset(),
                    regression_prune_loss_per_element(), chain_post_quant_to_previous_stage(),
                    later_stages_checked(ran), final_evaluation_left_to_caller(), uniform_histograms(),
                    post_quant_batch_size(), ir_op_nodes_in_creation_order(),
                    post_quant_skip_list(skip_tensor_list), teacher_kept_fp32()):
            stack.enter_context(fix)
        yield ran
