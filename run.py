"""Compress a converted model with PaddleSlim AutoCompression, or only evaluate it on GLUE.

    python run.py --config_path ./configs/cola.yaml --save_dir ./output/cola/
    python run.py --config_path ./configs/cola.yaml --eval True
    python run.py --config_path ./configs/cola.yaml --eval --model_dir ./output/cola

The YAML keeps PaddleSlim's schema: a `Global` section for the model, data and task, and
the strategy sections AutoCompression takes (Distillation, QuantAware, QuantPost,
TransformerPrune, HyperParameterOptimization, TrainConfig, ...). See README.md, "Config".
"""
import argparse
import copy
import importlib.util
import inspect
import json
import logging
import os
import shutil
import time

import numpy as np

import cli
import files
import glue
import predictors
import smooth
import workarounds

logger = logging.getLogger("run")

# Global keys: name -> default (REQUIRED when the config must give it).
REQUIRED = object()
GLOBAL_KEYS = {
    "model_dir": REQUIRED,
    "task_name": REQUIRED,
    "batch_size": REQUIRED,
    "max_seq_length": REQUIRED,
    "input_names": None,  # None: the model's own feed names
    "model_filename": "model.pdmodel",
    "params_filename": "model.pdiparams",
    "model_type": None,  # informational, as in the document
    "dataset": "glue",
    "padding": "max_length",
    "return_attention_mask": True,
    "data_dir": None,  # None: $GLUE_DIR, else PaddleNLP's download
    "eval_samples": None,  # None: compression evaluates whole dev splits; N: a seeded sample of N rows each
    "seed": 0,  # the order of the training batches (and so PTQ's calibration batches): the same run, the same model
}


def parse_bool(text):
    """argparse type for --eval: accepts the document's `--eval True` and `--eval False`."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_path", required=True, help="YAML config (see configs/)")
    parser.add_argument("--save_dir", default="output",
                        help="where the compressed model and results.json go (default: %(default)s)")
    parser.add_argument("--eval", nargs="?", const=True, default=False, type=parse_bool,
                        help="only evaluate Global.model_dir on the dev set; `--eval`, `--eval True` and "
                             "`--eval False` all work")
    parser.add_argument("--model_dir", help="overrides Global.model_dir (e.g. a compressed model to evaluate)")
    parser.add_argument("--data_dir", help="overrides Global.data_dir: a GLUE folder in TSV layout")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, YAML-parsed, e.g. --set TrainConfig.train_iter=100 "
                             "(repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --save_dir")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------
# Strategy keys that count steps, rows or trials: a positive integer (or null for PaddleSlim's default;
# HyperParameterOptimization.batch_num is a list of them).
COUNT_KEYS = ("train_iter", "epochs", "eval_iter", "logging_iter", "batch_size", "batch_nums", "batch_num",
              "max_quant_count")
# Keys run.py adds to PaddleSlim's sections, with their defaults; compress() takes them out before
# AutoCompression reads the config. smooth_alpha: SmoothQuant (smooth.py) before calibration, or before
# quantization-aware training; skip_head: the pooler and classifier stay fp32 (head_weights), in both;
# skip_attention: QAT trains the matmuls of two activations in fp32 (attention_matmuls).
OWN_KEYS = {"QuantPost": {"smooth_alpha": None, "skip_head": False},
            "QuantAware": {"smooth_alpha": None, "skip_head": False, "skip_attention": False}}
# Training rows whose activations set the smoothing scales before QAT (a seeded sample): as many as
# the shipped QuantPost configs calibrate on (40 batches of 8).
SMOOTH_ROWS = 320


def strategy_sections():
    """The config sections: {section: {key it accepts: its default}}, PaddleSlim's and OWN_KEYS."""
    from paddleslim.auto_compression import strategy_config

    names = list(strategy_config.SUPPORTED_CONFIG) + [strategy_config.TRAIN_CONFIG_NAME]
    sections = {name: {p.name: p.default for p in inspect.signature(getattr(strategy_config, name)).parameters.values()
                       if p.name != "self"}
                for name in names}
    for name, keys in OWN_KEYS.items():
        sections[name].update(keys)
    return sections


def apply_overrides(config, overrides, path):
    import yaml

    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise cli.InputError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. TrainConfig.train_iter=100")
        if not isinstance(config.get(section, {}), dict):
            raise cli.InputError(f"--set {item!r}: section {section} of {path} is not a mapping")
        try:
            config.setdefault(section, {})[name] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise cli.InputError(f"--set {item!r}: the value is not valid YAML "
                                 f"({str(exc).splitlines()[0]}); quote text, e.g. --set 'Sec.key=\"a: b\"'") from None


def read_yaml(path):
    import yaml

    if not os.path.isfile(path):
        raise cli.InputError(f"config {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except UnicodeDecodeError as exc:
        raise cli.InputError(f"config {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise cli.InputError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc


def _is_number_text(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def check_strategy_values(path, sections, config):
    """Each strategy key's value has the type of PaddleSlim's default for it (a number where it takes a number).

    PaddleSlim checks none of them: `learning_rate: "fast"` fails deep in the optimizer, and a
    negative `train_iter` silently runs one step.
    """
    for name, body in config.items():
        for key, value in body.items():
            default = sections[name][key]
            where = f"config {path}: {name}.{key}"
            if key in COUNT_KEYS:
                counts = value if isinstance(default, list) and isinstance(value, list) else [value]  # HPO: a list
                if any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in counts):
                    raise cli.InputError(f"{where} must be a positive integer, got {value!r}")
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise cli.InputError(f"{where} must be true or false, got {value!r}")
            elif isinstance(default, (int, float)) and not (key == "learning_rate" and isinstance(value, dict)):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if _is_number_text(value) else ""
                    raise cli.InputError(f"{where} must be a number, got {value!r}{hint}")
                if isinstance(default, float):
                    body[key] = float(value)  # PaddleSlim takes an int learning_rate for a scheduler dict
    for name in OWN_KEYS:
        alpha = (config.get(name) or {}).get("smooth_alpha")
        if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                                  or not 0 <= alpha <= 1):
            raise cli.InputError(f"config {path}: {name}.smooth_alpha must be a number from 0 to 1 (or null: no "
                                 f"smoothing), got {alpha!r}")
    if (config.get("HyperParameterOptimization") or {}).get("max_quant_count") == 1:
        raise cli.InputError(f"config {path}: HyperParameterOptimization.max_quant_count 1 is PaddleSlim's tester "
                             "mode, which after its one trial may train QAT + distillation instead "
                             "(auto_strategy.get_final_quant_config): set 2 or more, or drop "
                             "HyperParameterOptimization for one post-training quantization")
    builder = (config.get("TrainConfig") or {}).get("optimizer_builder")
    if builder is not None:
        optimizer = builder.get("optimizer") if isinstance(builder, dict) else None
        if not isinstance(optimizer, dict) or not isinstance(optimizer.get("type"), str):
            raise cli.InputError(f"config {path}: TrainConfig.optimizer_builder needs optimizer: {{type: SGD | "
                                 f"Momentum | AdamW ...}}, got {builder!r}")
        weight_decay = builder.get("weight_decay")
        if optimizer["type"] == "AdamW" and weight_decay is None:
            raise cli.InputError(f"config {path}: TrainConfig.optimizer_builder: AdamW needs weight_decay "
                                 "(Paddle refuses None), e.g. weight_decay: 0.01")
        if weight_decay is not None and (isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float))):
            raise cli.InputError(f"config {path}: TrainConfig.optimizer_builder.weight_decay must be a number, "
                                 f"got {weight_decay!r}")


def load_config(path, model_dir=None, data_dir=None, overrides=()):
    """Read and validate a run.py YAML config.

    Args:
        path: the YAML file.
        model_dir, data_dir: command-line overrides of Global.model_dir / Global.data_dir.
        overrides: "SECTION.KEY=VALUE" strings (--set).
    Returns:
        (global_config dict with every key filled, strategy sections dict for AutoCompression)
    Raises:
        cli.InputError naming the file, the key, the bad value and what is allowed.
    """
    config = read_yaml(path)
    if not isinstance(config, dict) or not isinstance(config.get("Global"), dict):
        raise cli.InputError(f"config {path} has no Global section: it needs at least "
                             f"Global.{', Global.'.join(k for k, v in GLOBAL_KEYS.items() if v is REQUIRED)}")
    apply_overrides(config, overrides, path)
    gcfg = config.pop("Global")
    if model_dir:
        gcfg["model_dir"] = model_dir
    if data_dir:
        gcfg["data_dir"] = data_dir
    check_sections(path, config)
    check_global(path, gcfg, config)
    check_model(path, gcfg)
    return gcfg, config


def check_sections(path, config):
    """Every strategy section and key is one PaddleSlim defines, with a value of the right type."""
    sections = strategy_sections()
    for name, body in config.items():
        if name not in sections:
            raise cli.InputError(f"config {path}: unknown section {name!r}; allowed: Global, {', '.join(sections)}")
        if body is None:
            config[name] = body = {}
        if not isinstance(body, dict):
            raise cli.InputError(f"config {path}: section {name} must be a mapping, got {body!r}")
        for key in body:
            if key not in sections[name]:
                raise cli.InputError(f"config {path}: unknown key {name}.{key}; allowed: {', '.join(sections[name])}")
    check_strategy_values(path, sections, config)


def check_global(path, gcfg, strategies):
    """Global's keys known, defaults filled in, each value one run.py can use."""
    for key in gcfg:
        if key not in GLOBAL_KEYS:
            raise cli.InputError(f"config {path}: unknown key Global.{key}; allowed: {', '.join(GLOBAL_KEYS)}")
    for key, default in GLOBAL_KEYS.items():
        if key not in gcfg or gcfg[key] is None:
            if default is REQUIRED:
                raise cli.InputError(f"config {path}: missing key Global.{key}")
            gcfg[key] = default
    try:
        gcfg["task_name"] = glue.canonical_task(gcfg["task_name"])
    except cli.InputError as exc:
        raise cli.InputError(f"config {path}: Global.task_name: {exc}") from None
    if gcfg["dataset"] != "glue":
        raise cli.InputError(f"config {path}: Global.dataset {gcfg['dataset']!r} is not supported; allowed: glue")
    if gcfg["padding"] not in glue.PADDING_CHOICES:
        raise cli.InputError(f"config {path}: Global.padding {gcfg['padding']!r}; allowed: "
                             f"{', '.join(glue.PADDING_CHOICES)}")
    if gcfg["return_attention_mask"] is not True:
        raise cli.InputError(f"config {path}: Global.return_attention_mask must be True: converted models take "
                             "input_ids, attention_mask and token_type_ids")
    for key in ("batch_size", "max_seq_length", "eval_samples"):  # only eval_samples may be None here
        value = gcfg[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise cli.InputError(f"config {path}: Global.{key} must be a positive integer, got {value!r}")
    if not isinstance(gcfg["seed"], int) or isinstance(gcfg["seed"], bool) or gcfg["seed"] < 0:
        raise cli.InputError(f"config {path}: Global.seed must be an integer >= 0, got {gcfg['seed']!r}")
    distillation = strategies.get("Distillation") or {}
    if glue.get_task(gcfg["task_name"]).is_regression and distillation.get("loss") == "soft_label":
        raise cli.InputError(f"config {path}: Distillation.loss soft_label is always 0 for {gcfg['task_name']}, a "
                             "regression with one output (nothing would be distilled): use l2")


def check_model(path, gcfg):
    """Global's model files exist, its feed names and sequence length fit the config."""
    for key in ("model_filename", "params_filename"):
        file = os.path.join(gcfg["model_dir"], gcfg[key])
        if not os.path.isfile(file):
            raise cli.InputError(f"config {path}: Global.{key}: {file} does not exist (Global.model_dir is "
                                 f"{gcfg['model_dir']!r}; convert a model with convert.py, or pass --model_dir)")
    model = files.read_paddle_model(*model_paths(gcfg), what=f"config {path}: Global.model_dir")
    if gcfg["input_names"] is None:
        gcfg["input_names"] = model.feeds
    if sorted(gcfg["input_names"]) != sorted(model.feeds):
        raise cli.InputError(f"config {path}: Global.input_names {gcfg['input_names']} do not match the model's "
                             f"feed names {model.feeds}")
    if model.fixed_seq_length not in (None, gcfg["max_seq_length"]):
        raise cli.InputError(f"config {path}: Global.max_seq_length {gcfg['max_seq_length']}: the model's sequence "
                             f"length is fixed at {model.fixed_seq_length} (a trace conversion); use that, or "
                             "convert with --method onnx")
    if model.fixed_seq_length is not None and gcfg["padding"] != "max_length":
        raise cli.InputError(f"config {path}: Global.padding {gcfg['padding']}: the model's sequence length is fixed "
                             f"at {model.fixed_seq_length} (a trace conversion), so every batch must be padded to it; "
                             "use padding: max_length, or convert with --method onnx")


def model_paths(gcfg, model_dir=None):
    """(model file, params file) of Global's model, or of the model in `model_dir`."""
    folder = model_dir or gcfg["model_dir"]
    return os.path.join(folder, gcfg["model_filename"]), os.path.join(folder, gcfg["params_filename"])


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------
def labelled_batches(features, batch_size, collate):
    """Feeds plus 'label' [batch, 1]: what TransformerPrune reads from eval_dataloader."""
    def loader():
        for feeds, labels in glue.batches(features, batch_size, collate):
            yield {**feeds, "label": labels.reshape(-1, 1)}
    return loader


def no_decay_for_vectors(vector_params):
    """AdamW's apply_decay_param_fun: decay matrices only, never biases or LayerNorm scales.

    (The upstream example's function returned True for biases and norms, i.e. decayed only
    those.) Converted models name parameters w_0.w_N, so vectors are found by shape.
    """
    def apply_decay(name):
        return name not in vector_params
    return apply_decay


def head_weights(program):
    """Weights of the linear layers that read one row per sentence, not one per token: a BERT's pooler
    and classifier, after the [CLS] slice. Their input has rank 2 ([batch, hidden]), a token's rank 3.

    At sequence length 128 they are about 0.01 % of the model's multiply-adds, and quantized they cost
    the most dev metric per layer (benchmarks/ptq_diagnostic, STS-B), so QuantPost.skip_head keeps them fp32.
    """
    block = program.blocks[0]
    rank = {v.name: len(v.type.lod_tensor.tensor.dims) for v in block.vars if v.type.type == v.type.LOD_TENSOR}
    persistable = {v.name for v in block.vars if v.persistable}
    heads = []
    for op in block.ops:
        if op.type in smooth.LINEAR_TYPES:
            args = {a.parameter: list(a.arguments) for a in op.inputs}
            if args["Y"][0] in persistable and args["X"][0] not in persistable and rank.get(args["X"][0]) == 2:
                heads.append(args["Y"][0])
    return heads


def kept_fp32(name, section, program):
    """Takes run.py's skip_head out of a quantization section: the head weights it keeps fp32 (logged), or []."""
    if not section.pop("skip_head", False):
        return []
    heads = head_weights(program)
    logger.info("%s.skip_head: %s", name, f"{len(heads)} linear layers stay fp32 ({', '.join(heads)})" if heads
                else "no linear layer reads one row per sentence; every layer is quantized")
    return heads


def attention_matmuls(program):
    """The indices of a ProgramDesc's matmuls of two activations (no persistable input): in a BERT,
    attention's Q.K^T and softmax.V, which run in fp32 under `infer.py --int8` on CPU
    (predictors.ONEDNN_INT8_OPS) and in int8 only where the quantizer put Q/DQ pairs on them."""
    block = program.blocks[0]
    persistable = {v.name for v in block.vars if v.persistable}
    return [i for i, op in enumerate(block.ops) if op.type in smooth.LINEAR_TYPES
            and not persistable & {n for arg in op.inputs for n in arg.arguments}]


def attention_kept_fp32(section, program):
    """Takes run.py's skip_attention out of a QuantAware section: the attention_matmuls it keeps fp32
    (logged), or [].

    PaddleSlim's QuantAware fake-quantizes both inputs of these matmuls, and its evaluations during
    training (which pick the model it saves) score that; deployed with oneDNN they run in fp32. On
    RTE's QAT model the two differed in 7 dev rows, 5 of them gone when the pairs were taken out of
    the evaluated model (benchmarks/qat_gap).
    """
    if not section.pop("skip_attention", False):
        return []
    ops = attention_matmuls(program)
    logger.info("QuantAware.skip_attention: %d matmuls of two activations train in fp32, as oneDNN deploys them",
                len(ops))
    return ops


def skip_quant(program, weights, ops=()):
    """A copy of a ProgramDesc whose ops that read `weights`, and those at the indices `ops`, carry
    op_namescope workarounds.SKIP_QUANT."""
    from paddle.base.proto import framework_pb2

    tagged = framework_pb2.ProgramDesc()
    tagged.CopyFrom(program)
    for index, op in enumerate(tagged.blocks[0].ops):
        if index in ops or set(weights) & {n for arg in op.inputs for n in arg.arguments}:
            attr = next((a for a in op.attrs if a.name == "op_namescope"), None)
            if attr is None:
                attr = op.attrs.add(name="op_namescope", type=framework_pb2.STRING)
            attr.s = workarounds.SKIP_QUANT
    return tagged


def vector_param_names(program):
    """Persistable variables with at most one dimension: biases and LayerNorm scales."""
    return {v.name for v in program.blocks[0].vars
            if v.persistable and v.type.type == v.type.LOD_TENSOR and len(v.type.lod_tensor.tensor.dims) <= 1}


# ----------------------------------------------------------------------------------------
# Evaluate and compress
# ----------------------------------------------------------------------------------------
def evaluate_model(model, gcfg, dev_features, collate, desc="eval"):
    """The dev metrics of an inference model (a folder, or bytes in memory) as infer.py deploys it on CPU.

    Returns:
        (metrics, how they were measured: backend, precision, ...)
    """
    predictors.release_freed_memory()  # what the caller freed (after compressing: PaddleSlim's), before the peak
    what = "the model"
    if isinstance(model, str):
        what, model = model, predictors.read_model(*model_paths(gcfg, model))
    predict, path = predictors.deployed_cpu_predictor(model, threads=os.cpu_count() or 1, what=what)
    del model  # the predictor holds its own copy
    predictors.release_freed_memory()
    return glue.evaluate(predict, dev_features, gcfg["task_name"], gcfg["batch_size"], collate, desc=desc), path


def check_hpo_dependency(strategies):
    """PaddleSlim's HPO pip-installs smac at run time when it is missing: refuse before that."""
    auto = not set(strategies) - {"TrainConfig"}  # AutoCompression then picks prune + PTQ-HPO
    if ("HyperParameterOptimization" in strategies or auto) and importlib.util.find_spec("smac") is None:
        raise cli.InputError("post-training quantization with HyperParameterOptimization (also what "
                             "AutoCompression picks for a config with only TrainConfig) needs smac==1.4.0: "
                             "pip install -r requirements.txt")


def compress(gcfg, strategies, work, train_features, dev_features, collate, smooth_rows, importance_rows):
    """Run AutoCompression inside `work` (files.Work): the compressed model lands in work.out.

    PaddleSlim gets only paths this script made, relative to its working folder in work.root: a
    private copy of the model (AutoCompression rewrites model.pdmodel in place,
    compressor._get_model_info) and its save_dir `out`. workarounds.paddleslim_fixed holds every
    fix for PaddleSlim's and Paddle's bugs.

    smooth_rows are the features QuantAware.smooth_alpha sets its scales on (the same on every rank).
    importance_rows are the labelled training features TransformerPrune ranks heads and neurons on
    (PaddleSlim's eval_dataloader, which it reads for nothing else here: the metric comes from eval_callback).

    Returns:
        the strategies PaddleSlim ran.
    """
    import paddle
    from paddleslim.auto_compression import AutoCompression

    model_file, params_file = model_paths(gcfg)
    program = files.read_program(model_file)
    if "TrainConfig" in strategies:
        builder = strategies["TrainConfig"].setdefault("optimizer_builder", {"optimizer": {"type": "SGD"}})
        builder["apply_decay_param_fun"] = no_decay_for_vectors(vector_param_names(program))
    task = gcfg["task_name"]

    def eval_callback(exe, program, feed_names_, fetch_list):
        # A quantized model PaddleSlim saved (the final PTQ model, each HPO trial) is scored as it
        # deploys, with int8 kernels, instead of through its fake-quant ops in fp32 on the executor.
        if isinstance(program, paddle.static.Program) and predictors.has_int8_weights(
                program.desc.serialize_to_string()):
            model = predictors.serialize(program, feed_names_, fetch_list, exe)
            return evaluate_model(model, gcfg, dev_features, collate)[0]["headline"]

        def predict(feeds):
            return exe.run(program, feed={n: feeds[n] for n in feed_names_}, fetch_list=fetch_list)[0]
        return glue.evaluate(predict, dev_features, task, gcfg["batch_size"], collate, desc="eval")["headline"]

    # Under paddle.distributed.launch each rank has a folder of its own in the shared work folder
    # (its model copy, which PaddleSlim rewrites, and its quant_model_tmp); save_dir is shared, as
    # PaddleSlim's later stages on every rank read the model rank 0 saved.
    rank, world = distributed_rank()
    scratch = work.root if world == 1 else os.path.join(work.root, f"rank{rank}")
    os.makedirs(os.path.join(scratch, "model"))
    for source in (model_file, params_file):
        shutil.copy2(source, os.path.join(scratch, "model"))
    np.random.seed(gcfg["seed"])  # paddle.io.RandomSampler draws the batch order from numpy
    paddle.seed(gcfg["seed"])
    quant_post = strategies.get("QuantPost") or {}
    alpha = quant_post.pop("smooth_alpha", None)
    skip = list(quant_post.get("skip_tensor_list") or [])
    skip += [w for w in kept_fp32("QuantPost", quant_post, program) if w not in skip]
    if skip:
        quant_post["skip_tensor_list"] = skip
    quant_aware = strategies.get("QuantAware") or {}
    qat_alpha = quant_aware.pop("smooth_alpha", None)
    not_quantized = kept_fp32("QuantAware", quant_aware, program)
    attention = attention_kept_fp32(quant_aware, program)
    if not_quantized or attention:  # the ops are tagged in the model copy, as Paddle's PTQ tags its skip list
        quant_aware["not_quant_pattern"] = workarounds.with_skip_quant(quant_aware.get("not_quant_pattern"))
        with open(os.path.join(scratch, "model", os.path.basename(model_file)), "wb") as f:
            f.write(skip_quant(program, not_quantized, set(attention)).SerializeToString())
    model_dir = "model"
    with workarounds.paddleslim_fixed(program, scratch, skip) as ran, smooth.before_calibration(alpha, skip):
        if qat_alpha is not None:  # QAT trains, and distils from, a smoothed copy: the same function in fp32
            model_dir = smooth.smoothed_copy(  # in the working folder, scratch
                model_dir, gcfg["model_filename"], gcfg["params_filename"],
                (feeds for feeds, _ in glue.batches(smooth_rows, gcfg["batch_size"], collate)), qat_alpha,
                quant_aware.get("quantize_op_types") or smooth.LINEAR_TYPES, not_quantized)
        AutoCompression(
            model_dir=model_dir, model_filename=gcfg["model_filename"],
            params_filename=gcfg["params_filename"], save_dir=os.path.relpath(work.out, scratch),
            config=strategies,
            train_dataloader=glue.paddle_feed_loader(train_features, gcfg["batch_size"], collate),
            eval_callback=eval_callback,
            eval_dataloader=labelled_batches(importance_rows, gcfg["batch_size"], collate)).compress()
    return ran


def distributed_rank():
    """(rank, world size) under `python -m paddle.distributed.launch`, else (0, 1).

    Read from the variables the launcher sets for each process (what paddle.distributed.get_rank
    reads too), so that the data shard and the writer are known before Paddle starts.
    """
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0") or 0)
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)
    return rank, world


def evaluate_only(gcfg, save_dir, dev_features, collate):
    start = time.perf_counter()
    metrics, path = evaluate_model(gcfg["model_dir"], gcfg, dev_features, collate)
    result = {"mode": "eval", "model_dir": gcfg["model_dir"], "task_name": gcfg["task_name"], "metrics": metrics,
              "evaluated_with": path,
              "seconds": round(time.perf_counter() - start, 2)}
    os.makedirs(save_dir, exist_ok=True)
    cli.write_json(os.path.join(save_dir, "results.json"), result)
    print(f"eval {gcfg['task_name']} {gcfg['model_dir']}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return result


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()
    with workarounds.mkl_avx2_on_amd() as fixed:
        if fixed:
            logger.info("AMD CPU: MKL_DEBUG_CPU_TYPE=5, so that Paddle's MKL trains on its AVX2 kernels "
                        "(workarounds.mkl_avx2_on_amd)")
        return run(args)


def run(args):
    gcfg, strategies = load_config(args.config_path, args.model_dir, args.data_dir, args.set)
    logger.info("effective config: %s", json.dumps({"Global": gcfg, **strategies}, default=str))
    task = gcfg["task_name"]
    data_dir = glue.resolve_data_dir(gcfg["data_dir"])
    save_dir = files.check_save_dir(args.save_dir, inputs=[gcfg["model_dir"], data_dir, args.config_path],
                                    overwrite=args.overwrite, replace=not args.eval)
    if not args.eval:
        check_hpo_dependency(strategies)

    tokenizer = glue.load_tokenizer(gcfg["model_dir"])
    collate = glue.Collator(gcfg["input_names"], tokenizer.pad_token_id, tokenizer.pad_token_type_id,
                            gcfg["max_seq_length"], gcfg["padding"])
    # Compression evaluates the dev set several times (before, every eval_iter steps, after): on a
    # large one (QQP: 40430 rows) a seeded sample keeps that affordable; --eval scores it whole.
    samples = None if args.eval else gcfg["eval_samples"]
    dev_features = {split: glue.convert_examples(glue.sample(examples, samples), tokenizer, gcfg["max_seq_length"],
                                                 task, desc=f"tokenize {split}")
                    for split, examples in glue.load_dev_splits(task, data_dir).items()}
    if args.eval:
        return evaluate_only(gcfg, save_dir, dev_features, collate)

    # Under paddle.distributed.launch every GPU runs this script: each trains on its own shard
    # of the training data, and rank 0 alone evaluates and writes the output.
    rank, world = distributed_rank()
    start = time.perf_counter()
    train_examples = glue.load_split(task, "train", data_dir)
    train_features = glue.TokenizedOnRead(train_examples[rank::world], tokenizer, gcfg["max_seq_length"], task)
    smooth_rows = []  # a seeded sample of the whole training set, so that every rank smooths alike
    if (strategies.get("QuantAware") or {}).get("smooth_alpha") is not None:
        smooth_rows = glue.convert_examples(glue.sample(train_examples, SMOOTH_ROWS, gcfg["seed"]), tokenizer,
                                            gcfg["max_seq_length"], task, desc="tokenize smoothing rows")
    # Training rows, never dev rows: a pruning chosen on the rows it is scored on would flatter it. As many
    # as the compression's first dev split has (its cost as before), drawn alike on every rank.
    importance_rows = glue.convert_examples(
        glue.sample(train_examples, len(next(iter(dev_features.values()))), gcfg["seed"]), tokenizer,
        gcfg["max_seq_length"], task, desc="tokenize pruning rows")
    if rank == 0:
        before, before_path = evaluate_model(gcfg["model_dir"], gcfg, dev_features, collate, desc="eval before")
    with files.building(save_dir, "run", args.overwrite, rank=rank, world_size=world) as work:
        ran = compress(gcfg, copy.deepcopy(strategies), work, train_features, dev_features, collate, smooth_rows,
                       importance_rows)
        compress_seconds = time.perf_counter() - start
        if rank != 0:
            logger.info("rank %d of %d done; rank 0 writes %s", rank, world, save_dir)
            return {"mode": "compress", "rank": rank, "world_size": world, "strategies": ran}
        for name in glue.TOKENIZER_FILES + ("tokenizer.json",):
            if os.path.isfile(os.path.join(gcfg["model_dir"], name)):
                shutil.copy2(os.path.join(gcfg["model_dir"], name), work.out)
        after, after_path = evaluate_model(work.out, gcfg, dev_features, collate, desc="eval after")
        result = {"mode": "compress", "model_dir": gcfg["model_dir"], "task_name": task, "strategies": ran,
                  "config": {"Global": gcfg, **strategies}, "metrics_before": before, "metrics_after": after,
                  "evaluated_with": {"before": before_path, "after": after_path},
                  "compress_seconds": round(compress_seconds, 2), "train_examples": len(train_features),
                  "world_size": world, "dev_samples": {split: len(features) for split, features in dev_features.items()},
                  "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE")}  # its training speed on AMD
        cli.write_json(os.path.join(work.out, "results.json"), result)
    headline = glue.headline_metric(task)
    print(f"compressed {task} ({' + '.join(ran)}) -> {args.save_dir}: {headline} "
          f"{before['headline']:.4f} -> {after['headline']:.4f} ({after_path['precision']} on CPU) "
          f"in {compress_seconds:.0f} s")
    return result


if __name__ == "__main__":
    cli.cli(main)
