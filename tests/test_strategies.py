"""Every compression strategy run.py offers, on the graphs convert.py writes (both methods).

A few steps each on a tiny GLUE fixture: each strategy runs through run.py, changes the
model the way it should (quantization scales on the output-channel axis, pruned heads),
and leaves a model that Paddle Inference loads and runs, with the tokenizer files beside it.
"""
import os

import numpy as np
import pytest
import yaml

import files
import glue
import predictors
import run
from conftest import SEQ, folder_digest, load_model, random_feeds, write_sst2_fixture

TRAIN = {"train_iter": 3, "eval_iter": 1000, "learning_rate": 1.0e-5, "logging_iter": 1,
         "optimizer_builder": {"optimizer": {"type": "AdamW"}, "weight_decay": 0.01}}
QUANT_POST = {"quantize_op_types": ["matmul", "matmul_v2"], "onnx_format": True, "smooth_alpha": 0.75,
              "skip_head": True}
STRATEGIES = {
    # the document's configs/<task>.yaml, with run.py's QuantAware.smooth_alpha, skip_head and skip_attention on
    "distill_qat": {"Distillation": {"alpha": 1.0, "loss": "soft_label"},
                    "QuantAware": {"use_pact": True, "activation_quantize_type": "moving_average_abs_max",
                                   "quantize_op_types": ["matmul", "matmul_v2"], "smooth_alpha": 0.75,
                                   "skip_head": True, "skip_attention": True},
                    "TrainConfig": TRAIN},
    # the headline: configs/<task>_prune_ptq.yaml
    "prune_ptq_hpo": {"TransformerPrune": {"pruned_ratio": 0.25}, "Distillation": {"alpha": 1.0, "loss": "l2"},
                      "QuantPost": QUANT_POST,
                      "HyperParameterOptimization": {"ptq_algo": ["avg", "KL"], "bias_correct": [False],
                                                     "weight_quantize_type": ["channel_wise_abs_max"],
                                                     "batch_num": [1, 2], "max_quant_count": 2},
                      "TrainConfig": TRAIN},
    # the headline without its search, as benchmarks/train_iter.py runs it (its one save is its best model)
    "prune_ptq": {"TransformerPrune": {"pruned_ratio": 0.25}, "Distillation": {"alpha": 1.0, "loss": "l2"},
                  "QuantPost": {**QUANT_POST, "batch_size": 4, "batch_nums": 2}, "TrainConfig": TRAIN},
    "ptq": {"QuantPost": {**QUANT_POST, "batch_size": 4, "batch_nums": 2}},
    "auto": {"TrainConfig": TRAIN},  # AutoCompression picks the strategy
}
EXPECTED = {"distill_qat": ["qat_dis"], "prune_ptq_hpo": ["transformer_prune_dis", "ptq_hpo"],
            "prune_ptq": ["transformer_prune_dis", "quant_post"], "ptq": ["quant_post"],
            "auto": ["transformer_prune_dis", "ptq_hpo"]}


def write_config(path, model_dir, data_dir, sections):
    glob = {"model_dir": model_dir, "task_name": "sst-2", "batch_size": 4, "max_seq_length": SEQ,
            "input_names": ["input_ids", "attention_mask", "token_type_ids"], "data_dir": data_dir}
    with open(path, "w") as f:
        yaml.safe_dump({"Global": glob, **sections}, f)
    return str(path)


def stat_digest(folder):
    """Names, sizes and modification times below folder: PaddleSlim rewrote model.pdmodel in place
    with nearly the same bytes, so the content alone barely showed it."""
    return sorted((os.path.relpath(os.path.join(root, n), folder), os.stat(os.path.join(root, n)).st_size,
                   os.stat(os.path.join(root, n)).st_mtime_ns) for root, _, names in os.walk(folder) for n in names)


def quantized_inputs(block, persistable):
    """{"attention": the matmuls of two activations, "linear": those of an activation and a weight} in a
    block, each as (how many, how many of their activation inputs a dequantize_linear writes)."""
    producer = {n: op for op in block.ops for n in op.output_arg_names}

    def source(name):  # the tensor a chain of quantize/dequantize ops started from
        while name in producer and producer[name].type in ("quantize_linear", "dequantize_linear"):
            name = producer[name].input("X")[0]
        return name

    found = {"attention": [0, 0], "linear": [0, 0]}
    for op in block.ops:
        if op.type in ("matmul", "matmul_v2"):
            activations = [n for n in op.input_arg_names if source(n) not in persistable]
            kind = found["attention" if len(activations) == 2 else "linear"]
            kind[0] += 1
            kind[1] += sum(n in producer and producer[n].type == "dequantize_linear" for n in activations)
    return {k: tuple(v) for k, v in found.items()}


# A folder name a shell would split and run: HPO copies its best model with os.system("cp -r ...").
SHELL_BAIT = "my models 'q' \"d\";touch $PWNED;"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_through_run_py(converted, strategy, tmp_path, monkeypatch):
    method, model_dir, _ = converted
    write_sst2_fixture(tmp_path / "glue")
    monkeypatch.chdir(tmp_path)  # relative paths, as users type them (PaddleSlim runs in a scratch folder)
    monkeypatch.setenv("PWNED", str(tmp_path / "pwned"))
    model_before = (folder_digest(model_dir), stat_digest(model_dir))
    from paddleslim.auto_compression import create_compressed_program

    quant_aware, trained = create_compressed_program.quant_aware, []
    monkeypatch.setattr(create_compressed_program, "quant_aware",
                        lambda *args, **kwargs: trained.append(quant_aware(*args, **kwargs)) or trained[-1])
    config = write_config("config.yaml", os.path.relpath(model_dir), "glue", STRATEGIES[strategy])
    result = run.main(["--config_path", config, "--save_dir", os.path.join(SHELL_BAIT, "out")])
    save_dir = str(tmp_path / SHELL_BAIT / "out")

    assert (folder_digest(model_dir), stat_digest(model_dir)) == model_before  # the input is never written
    assert not os.path.exists(tmp_path / "pwned")  # no shell ran the path
    assert result["strategies"] == EXPECTED[strategy]
    assert set(result["metrics_before"]) == set(result["metrics_after"]) == {"acc", "headline"}
    for name in ("model.pdmodel", "model.pdiparams", "results.json", "vocab.txt", "tokenizer_config.json"):
        assert os.path.isfile(os.path.join(save_dir, name)), name
    assert sorted(os.listdir(tmp_path)) == sorted(["config.yaml", "glue", SHELL_BAIT])  # no scratch left behind
    assert os.listdir(tmp_path / SHELL_BAIT) == ["out"]  # no work folders left behind

    prefix = os.path.join(save_dir, "model")
    predict = predictors.cpu_predictor(prefix)
    logits = predict(random_feeds(3, SEQ, seed=1))
    assert logits.shape == (3, 2) and np.isfinite(logits).all()

    block, _, params = load_model(prefix)
    # no op writes a variable it reads (a save that reused the input model's names made the last
    # scale op in-place, and PTQ then failed on a cycle: workarounds.names_after)
    assert not [op.type for op in block.ops if set(op.input_arg_names) & set(op.output_arg_names)]
    smoothed = [op for op in block.ops if op.type == "elementwise_mul" and op.input("Y")[0].endswith(".smooth_inverse")]
    # smooth_alpha (QuantPost, QuantAware): q/k/v, attention output, FFN in and out of each layer;
    # with skip_head the pooler and classifier are neither smoothed nor quantized
    assert len(smoothed) == (0 if strategy == "auto" else 4 * 2)
    users = {op.input("Y")[0]: op for op in block.ops if op.type == "matmul_v2"}
    # every strategy here ends in quantization (its last stage: quant_post, ptq_hpo or qat_dis)
    dequant = [op for op in block.ops if op.type == "dequantize_linear" and op.output("Y")[0] in users
               and op.input("X")[0] in params]
    assert len(dequant) >= 2 * 6  # every encoder linear is quantized
    heads = run.head_weights(files.read_program(os.path.join(model_dir, "model.pdmodel")))
    assert len(heads) == 2 and set(heads) <= set(users) | {op.input("X")[0] for op in dequant}
    # skip_head (QuantPost, with or without the search; QuantAware): the pooler and classifier read fp32 weights
    quantized_heads = {op.input("X")[0] for op in dequant} & set(heads)
    assert quantized_heads == (set(heads) if strategy == "auto" else set())
    # every saved model carries a quantize/dequantize pair (a scale) on both inputs of attention's Q.K^T and
    # softmax.V in each of the 2 layers
    assert quantized_inputs(block, set(params))["attention"] == (2 * 2, 2 * 2 * 2)
    # the programs QAT evaluates and trains (the student, then the student and the distillation teacher):
    # the student's 6 linear layers in each of 2 layers fake-quantized; its pooler and classifier
    # (skip_head) and attention matmuls (skip_attention, as oneDNN deploys them) fp32; the teacher fp32
    # (workarounds.teacher_kept_fp32)
    assert [quantized_inputs(program.global_block(), {n for n, v in program.global_block().vars.items()
                                                      if v.persistable}) for program in trained] == (
        [{"attention": (2 * 2, 0), "linear": (6 * 2 + 2, 6 * 2)},
         {"attention": (2 * 2 * 2, 0), "linear": ((6 * 2 + 2) * 2, 6 * 2)}] if strategy == "distill_qat" else [])
    for op in dequant:
        # weights are [in, out]: one scale per output channel, on axis 1
        assert not users[op.output("Y")[0]].attr("trans_y")
        assert op.attr("quant_axis") == 1
        assert params[op.input("Scale")[0]].size == params[op.input("X")[0]].shape[1]
    if "transformer_prune_dis" in result["strategies"]:
        shapes = [params[op.input("X")[0]].shape for op in block.ops
                  if op.type == "dequantize_linear" and op.output("Y")[0] in users and op.input("X")[0] in params]
        assert shapes.count((32, 24)) == 3 * 2  # q, k, v of 2 layers: 3 of 4 heads kept
        assert shapes.count((24, 32)) == 2  # attention output
        assert shapes.count((32, 27)) == 2 and shapes.count((27, 32)) == 2  # FFN: int(37 * 3 / 4) neurons
        heads = [op.attr("shape")[2] for op in block.ops if op.type == "reshape2" and len(op.attr("shape")) == 4]
        assert heads == [3] * 6


def test_compression_evaluates_a_dev_sample(trace_model, tmp_path):
    """Global.eval_samples: every evaluation of a compression scores that many dev rows, not all 20."""
    data_dir = write_sst2_fixture(tmp_path / "glue")
    config = write_config(tmp_path / "c.yaml", trace_model, data_dir, STRATEGIES["ptq"])
    result = run.main(["--config_path", config, "--save_dir", str(tmp_path / "out"), "--set", "Global.eval_samples=7"])
    assert result["dev_samples"] == {"dev": 7}
    for metrics in (result["metrics_before"], result["metrics_after"]):
        assert round(metrics["acc"] * 7, 6) == round(metrics["acc"] * 7)  # a count of 7 rows right


def test_pruning_ranks_heads_and_neurons_on_training_rows(trace_model, tmp_path, monkeypatch):
    """TransformerPrune's importance reads as many rows as the compression's dev sample, all from the
    training split: a pruning chosen on the dev rows it is then scored on would flatter it."""
    from paddleslim.auto_compression import transformer_pruner

    seen = []
    init = transformer_pruner.TransformerPruner.__init__

    def record_rows(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for feeds in self.dataloader():
            seen.extend(tuple(int(t) for t, m in zip(ids, mask) if m)
                        for ids, mask in zip(feeds["input_ids"], feeds["attention_mask"]))

    monkeypatch.setattr(transformer_pruner.TransformerPruner, "__init__", record_rows)
    data_dir = write_sst2_fixture(tmp_path / "glue")
    sections = {"TransformerPrune": {"pruned_ratio": 0.25}, "Distillation": {"alpha": 1.0, "loss": "l2"},
                "TrainConfig": {**TRAIN, "train_iter": 1}}
    config = write_config(tmp_path / "c.yaml", trace_model, data_dir, sections)
    run.main(["--config_path", config, "--save_dir", str(tmp_path / "out"), "--set", "Global.eval_samples=7"])
    tokenizer = glue.load_tokenizer(trace_model)
    rows = {split: {tuple(glue.convert_example(ex, tokenizer, SEQ, "sst-2")["input_ids"])
                    for ex in glue.load_split("sst-2", split, data_dir)} for split in ("train", "dev")}
    assert len(seen) == 7 and set(seen) <= rows["train"] and not set(seen) & rows["dev"]


def write_stsb_fixture(data_dir, n=24, seed=0):
    """A GLUE-layout STS-B folder (the original 10 columns, float scores) over the tiny vocab."""
    from conftest import VOCAB

    rng = np.random.default_rng(seed)
    folder = os.path.join(data_dir, "STS-B")
    os.makedirs(folder, exist_ok=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    for split in ("train", "dev"):
        rows = [header] + [
            f"{i}\tmain\tx\t2012\t{i:04d}\tnone\tnone\t"
            + "\t".join(" ".join(VOCAB[j] for j in rng.integers(5, len(VOCAB), size=4)) for _ in range(2))
            + f"\t{5 * rng.random():.3f}" for i in range(n)]
        with open(os.path.join(folder, f"{split}.tsv"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return str(data_dir)


def test_prune_a_regression_model_after_a_classifier_in_one_process(trace_model, tmp_path):
    """TransformerPrune on STS-B (float labels, a 1-output head), right after an SST-2 pruning in
    the same process, as benchmarks/reproduce.py runs them: PaddleSlim 2.6 failed on both counts."""
    import convert
    from conftest import save_tiny_model

    stsb_model = str(tmp_path / "stsb_model")
    convert.main(["--model_name_or_path", save_tiny_model(tmp_path / "stsb_hf", num_labels=1), "--method", "trace",
                  "--max_seq_length", str(SEQ), "--save_dir", stsb_model])
    glue_dir = write_sst2_fixture(tmp_path / "glue")
    write_stsb_fixture(glue_dir)
    prune = {"TransformerPrune": {"pruned_ratio": 0.25}, "Distillation": {"alpha": 1.0, "loss": "l2"},
             "TrainConfig": {**TRAIN, "train_iter": 2}}
    for task, model_dir in (("sst-2", trace_model), ("sts-b", stsb_model)):
        config = write_config(tmp_path / f"{task}.yaml", model_dir, glue_dir, prune)
        result = run.main(["--config_path", config, "--save_dir", str(tmp_path / f"out-{task}"),
                           "--set", f"Global.task_name={task}"])
        assert result["strategies"] == ["transformer_prune_dis"]
    assert set(result["metrics_after"]) == {"pearson", "spearman", "headline"}
    block, _, params = load_model(str(tmp_path / "out-sts-b" / "model"))
    assert sorted({p.shape for p in params.values() if p.ndim == 2 and p.shape[0] == 32}) == [
        (32, 1), (32, 24), (32, 27), (32, 32)]  # q/k/v heads and FFN neurons pruned; pooler and head kept


def test_distill_qat_trains_the_same_model_twice(trace_model, tmp_path):
    # PACT's clip went on whichever consumer of a shared activation (a layer's q, k, v) Paddle's
    # quantization pass visited first, in an order that changed from run to run
    # (workarounds.ir_op_nodes_in_creation_order): the same config and seed trained other weights
    data_dir = write_sst2_fixture(tmp_path / "glue")
    sections = {**STRATEGIES["distill_qat"], "TrainConfig": {**TRAIN, "train_iter": 3}}
    config = write_config(tmp_path / "config.yaml", trace_model, data_dir, sections)
    params = []
    for name in ("first", "second", "third"):
        run.main(["--config_path", config, "--save_dir", str(tmp_path / name)])
        with open(tmp_path / name / "model.pdiparams", "rb") as f:
            params.append(f.read())
    assert params[0] == params[1] == params[2]
