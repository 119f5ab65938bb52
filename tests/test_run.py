"""run.py: command line, the validating config loader, and evaluation against PyTorch."""
import json
import os
import shutil

import numpy as np
import pytest
import yaml

import convert
import cli
import glue
import run
import workarounds
from conftest import ROOT, SEQ, load_model, write_sst2_fixture



def write_yaml(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)


def base_config(model_dir, data_dir=None):
    return {"Global": {"model_dir": model_dir, "task_name": "sst-2", "batch_size": 4, "max_seq_length": SEQ,
                       "input_names": ["input_ids", "attention_mask", "token_type_ids"], "data_dir": data_dir},
            "TrainConfig": {"train_iter": 2}}


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--help"])
    assert exit_info.value.code == 0
    assert "--eval True" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [([], False), (["--eval"], True), (["--eval", "True"], True),
                                            (["--eval", "False"], False), (["--eval", "true"], True)])
def test_eval_flag(argv, expected):
    assert run.parse_args(["--config_path", "c.yaml"] + argv).eval is expected


def test_eval_flag_rejects_other_values(capsys):
    with pytest.raises(SystemExit):
        run.parse_args(["--config_path", "c.yaml", "--eval", "maybe"])
    assert "expected True or False" in capsys.readouterr().err


def test_shipped_configs_are_valid(trace_model):
    """Every file in configs/ passes the loader (pointed at a real model), one per task and strategy."""
    names = sorted(os.listdir(os.path.join(ROOT, "configs")))
    assert len(names) == 3 * len(glue.TASKS)
    tasks = set()
    for name in names:
        gcfg, sections = run.load_config(os.path.join(ROOT, "configs", name), model_dir=trace_model,
                                         overrides=[f"Global.max_seq_length={SEQ}"])  # the tiny trace's length
        tasks.add(gcfg["task_name"])
        assert gcfg["input_names"] == list(convert.INPUT_NAMES)
        if name.endswith("_prune_ptq.yaml"):
            assert {"TransformerPrune", "Distillation", "QuantPost", "HyperParameterOptimization"} <= set(sections)
        elif name.endswith("_ptq.yaml"):
            assert set(sections) == {"QuantPost"}
        else:
            assert {"Distillation", "QuantAware", "TrainConfig"} <= set(sections)
    assert tasks == set(glue.TASKS)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("Global"), "has no Global section"),
    (lambda c: c.update(Quantize={}), "unknown section 'Quantize'; allowed: Global, QuantAware"),
    (lambda c: c["TrainConfig"].update(train_iters=3), "unknown key TrainConfig.train_iters; allowed: epochs, train_iter"),
    (lambda c: c["Global"].update(modeldir="x"), "unknown key Global.modeldir; allowed: model_dir"),
    (lambda c: c["Global"].pop("task_name"), "missing key Global.task_name"),
    (lambda c: c["Global"].update(task_name="wnli"), "Global.task_name: unknown GLUE task 'wnli'; allowed: cola"),
    (lambda c: c["Global"].update(model_filename="nope.pdmodel"), "Global.model_filename: .*nope.pdmodel does not exist"),
    (lambda c: c["Global"].update(input_names=["x0", "x1", "x2"]),
     r"Global.input_names \['x0', 'x1', 'x2'\] do not match the model's feed names "
     r"\['input_ids', 'attention_mask', 'token_type_ids'\]"),
    (lambda c: c["Global"].update(padding="max"), "Global.padding 'max'; allowed: max_length, longest"),
    (lambda c: c["Global"].update(batch_size=0), "Global.batch_size must be a positive integer"),
    (lambda c: c["Global"].update(eval_samples="all"), "Global.eval_samples must be a positive integer, got 'all'"),
    (lambda c: c["Global"].update(seed=-1), "Global.seed must be an integer >= 0, got -1"),
    (lambda c: c.update(QuantPost={"smooth_alpha": 2}), "QuantPost.smooth_alpha must be a number from 0 to 1"),
    (lambda c: c.update(QuantAware={"smooth_alpha": True}), "QuantAware.smooth_alpha must be a number from 0 to 1"),
    (lambda c: c.update(QuantPost={"skip_head": "yes"}), "QuantPost.skip_head must be true or false, got 'yes'"),
    (lambda c: c.update(QuantAware={"skip_head": 1}), "QuantAware.skip_head must be true or false, got 1"),
    (lambda c: c.update(QuantPost={}, HyperParameterOptimization={"max_quant_count": 1}),
     "HyperParameterOptimization.max_quant_count 1 is PaddleSlim's tester mode, .* set 2 or more"),
    (lambda c: (c["Global"].update(task_name="stsb"), c.update(Distillation={"loss": "soft_label"})),
     "Distillation.loss soft_label is always 0 for sts-b, a regression with one output"),
])
def test_bad_config(trace_model, tmp_path, edit, match):
    config = base_config(trace_model)
    edit(config)
    path = write_yaml(tmp_path / "bad.yaml", config)
    with pytest.raises(cli.InputError, match=f"config {path}: .*{match}" if "Global section" not in match
                       else f"config {path} {match}"):
        run.load_config(path)


def test_later_stages_are_logged_and_a_zero_step_stage_refused(caplog):
    """PaddleSlim gives a quantization stage after pruning a tenth of train_iter; 0 would mean 100 epochs."""
    from types import SimpleNamespace

    def compressor(train_iter):
        stages = [SimpleNamespace(train_iter=train_iter, epochs=None, learning_rate=2e-5),
                  SimpleNamespace(train_iter=int(train_iter * 0.1), epochs=None, learning_rate=2e-6),
                  SimpleNamespace(train_iter=int(train_iter * 0.1), epochs=None, learning_rate=2e-6)]
        return SimpleNamespace(_strategy=["prune_dis", "qat_dis", "ptq_hpo"], train_config=stages)

    with caplog.at_level("INFO", logger="workarounds"):
        workarounds.check_later_stages(compressor(40))
    assert [r.getMessage() for r in caplog.records] == [
        "PaddleSlim trains stage 2 (qat_dis) for 4 steps at learning rate 2e-06: a tenth of TrainConfig's"]
    with pytest.raises(cli.InputError, match="train_iter 9: PaddleSlim gives the qat_dis stage a tenth of it, "
                                              "which rounds to 0 and then means 100 epochs"):
        workarounds.check_later_stages(compressor(9))


def test_uniform_histograms_count_as_paddle_does():
    """The faster calibration histogram puts the values in Paddle's bins (a rounding at an edge aside),
    and Paddle's own method is back after the with block."""
    import paddle
    from types import SimpleNamespace
    from paddle.static.quantization import PostTrainingQuantization

    rng = np.random.default_rng(0)
    values = {"a": rng.standard_normal((4, 16, 64)).astype(np.float32), "b": rng.gamma(2.0, size=(8, 37)).astype(np.float32),
              "mask": np.full((1,), -3.4028235e38, dtype=np.float32)}  # a constant: all 2049 edges equal
    scope = paddle.static.Scope()
    for name, value in values.items():
        scope.var(name).get_tensor().set(value, paddle.CPUPlace())

    def sampler():
        return SimpleNamespace(_quantized_act_var_name=list(values), _scope=scope, _zero_size_var_names=set(),
                               _sampling_act_histogram={n: list(np.histogram([], bins=2048, range=(0.0, float(np.abs(v).max()))))
                                                        for n, v in values.items()})

    original = PostTrainingQuantization._sample_histogram
    paddles, ours = sampler(), sampler()
    original(paddles)
    with workarounds.uniform_histograms():
        PostTrainingQuantization._sample_histogram(ours)
    assert PostTrainingQuantization._sample_histogram is original
    for name, value in values.items():
        expected, got = paddles._sampling_act_histogram[name][0], ours._sampling_act_histogram[name][0]
        assert got.sum() == expected.sum() == value.size
        assert np.abs(got - expected).sum() <= 0.002 * value.size  # a value on an edge may change bins


def ptq_config(trace_model, tmp_path, **quant_post):
    """A PTQ config (avg) for the tiny model on the SST-2 fixture, written into tmp_path."""
    return write_yaml(tmp_path / "ptq.yaml", {
        "Global": {"model_dir": trace_model, "task_name": "sst-2", "batch_size": 4, "max_seq_length": SEQ,
                   "data_dir": write_sst2_fixture(tmp_path / "glue")},
        "QuantPost": {"quantize_op_types": ["matmul", "matmul_v2"], "onnx_format": True, "algo": "avg", **quant_post}})


def test_global_seed_makes_calibration_repeatable(trace_model, tmp_path):
    """Post-training quantization calibrates on shuffled training batches: Global.seed fixes which ones."""
    config = ptq_config(trace_model, tmp_path, batch_size=4, batch_nums=2)

    def params(name, seed):
        run.main(["--config_path", config, "--save_dir", str(tmp_path / name), "--set", f"Global.seed={seed}"])
        return (tmp_path / name / "model.pdiparams").read_bytes()

    first = params("a", 0)
    assert params("b", 0) == first
    assert params("c", 1) != first


def test_only_the_training_rows_read_are_tokenized(trace_model, tmp_path, monkeypatch):
    """run.py tokenizes a training row when the compression reads it (glue.TokenizedOnRead), not the whole
    training set first: calibration on 2 batches of 4, plus the batches paddle.io.DataLoader's thread reads
    ahead, tokenizes about 50 of 400 rows."""
    config = ptq_config(trace_model, tmp_path, batch_size=4, batch_nums=2)
    data_dir = write_sst2_fixture(tmp_path / "glue", n_train=400)
    train_rows = glue.read_split(data_dir, "sst-2", "train")
    train = {ex["text_a"] for ex in train_rows}
    dev = {ex["text_a"] for ex in glue.read_split(data_dir, "sst-2", "dev")}
    read, convert = [], glue.convert_example

    def counting(example, *args, **kwargs):
        if example["text_a"] in train - dev:
            read.append(example["text_a"])
        return convert(example, *args, **kwargs)

    monkeypatch.setattr(glue, "convert_example", counting)
    result = run.main(["--config_path", config, "--save_dir", str(tmp_path / "out")])
    assert result["train_examples"] == len(train_rows) == 400
    assert 8 <= len(read) <= 80


def test_post_training_quantization_scores_the_dev_set_once_after(trace_model, tmp_path, monkeypatch):
    """run.py scores the dev set before and after; PaddleSlim does not score the saved model a
    second time (workarounds.final_evaluation_left_to_caller), and its variables leave with its scope."""
    import paddle

    config = ptq_config(trace_model, tmp_path, batch_size=4, batch_nums=2)
    scored, evaluate = [], glue.evaluate

    def counting(*args, **kwargs):
        scored.append(kwargs.get("desc"))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(glue, "evaluate", counting)
    params = [n for n in load_model(os.path.join(trace_model, "model"))[2]
              if paddle.static.global_scope().find_var(n) is None]
    result = run.main(["--config_path", config, "--save_dir", str(tmp_path / "out")])
    assert scored == ["eval before", "eval after"]
    assert result["evaluated_with"]["after"]["precision"] == "int8"
    assert params and not [n for n in params if paddle.static.global_scope().find_var(n) is not None]


def test_calibration_batches_are_quantpost_batch_size(trace_model, tmp_path, monkeypatch):
    """QuantPost.batch_size, not Global.batch_size, sets the calibration batch; on avg the same rows in
    smaller batches give the same model (scales up to rounding)."""
    from paddle.static.quantization import post_training_quantization as ptq

    config = ptq_config(trace_model, tmp_path)
    seen, sample = [], ptq.PostTrainingQuantization._sample_avg

    def spy(self):
        seen.append(ptq.utils.load_variable_data(self._scope, sorted(self._quantized_act_var_name)[0]).shape[0])
        return sample(self)

    monkeypatch.setattr(ptq.PostTrainingQuantization, "_sample_avg", spy)

    def params(name, batch_size, batch_nums):
        seen.clear()
        run.main(["--config_path", config, "--save_dir", str(tmp_path / name), "--set",
                  f"QuantPost.batch_size={batch_size}", "--set", f"QuantPost.batch_nums={batch_nums}"])
        return list(seen), load_model(str(tmp_path / name / "model"))[2]

    batches, fours = params("a", 4, 2)
    assert batches == [4, 4]
    batches, twos = params("b", 2, 4)
    assert batches == [2, 2, 2, 2]
    assert fours.keys() == twos.keys()
    for name in fours:
        np.testing.assert_allclose(twos[name], fours[name], rtol=1e-5, err_msg=name)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("Global: [unclosed\n")
    with pytest.raises(cli.InputError, match="is not valid YAML"):
        run.load_config(str(path))
    with pytest.raises(cli.InputError, match="does not exist"):
        run.load_config(str(tmp_path / "absent.yaml"))


def test_overrides(trace_model, tmp_path):
    path = write_yaml(tmp_path / "c.yaml", base_config("/nowhere"))
    gcfg, sections = run.load_config(path, model_dir=trace_model, data_dir="/data",
                                     overrides=["TrainConfig.train_iter=7", "Global.batch_size=2"])
    assert gcfg["model_dir"] == trace_model and gcfg["data_dir"] == "/data" and gcfg["batch_size"] == 2
    assert sections["TrainConfig"]["train_iter"] == 7
    with pytest.raises(cli.InputError, match="expected SECTION.KEY=VALUE"):
        run.load_config(path, model_dir=trace_model, overrides=["train_iter=7"])


def test_defaults_fill_global(trace_model, tmp_path):
    config = base_config(trace_model)
    del config["Global"]["input_names"]
    gcfg, _ = run.load_config(write_yaml(tmp_path / "c.yaml", config))
    assert gcfg["input_names"] == list(convert.INPUT_NAMES)  # the model's own feeds
    assert gcfg["padding"] == "max_length" and gcfg["model_filename"] == "model.pdmodel"


def test_eval_matches_pytorch(trace_model, tiny_bert, tmp_path):
    """run.py --eval on the converted model gives the metric PyTorch gives on the same dev set."""
    from transformers import AutoTokenizer

    data_dir = write_sst2_fixture(tmp_path / "glue")
    config = write_yaml(tmp_path / "c.yaml", base_config(trace_model, data_dir))
    result = run.main(["--config_path", config, "--eval", "True", "--save_dir", str(tmp_path / "res")])
    with open(tmp_path / "res" / "results.json") as f:
        assert json.load(f) == result

    model, _ = convert.load_torch_model(tiny_bert)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    dev = glue.read_split(data_dir, "sst-2", "dev")
    batch = tokenizer([ex["text_a"] for ex in dev], padding="max_length", max_length=SEQ, truncation=True,
                      return_tensors="np")
    logits = convert.torch_logits(convert.logits_module(model), {k: batch[k].astype(np.int64)
                                                                for k in convert.INPUT_NAMES})
    expected = float(np.mean(logits.argmax(-1) == np.array([ex["label"] for ex in dev])))
    assert result["metrics"] == {"acc": expected, "headline": expected}


def test_compression_never_writes_into_model_dir(trace_model, tmp_path):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trace_model, model_dir)
    config = write_yaml(tmp_path / "c.yaml", base_config(model_dir))
    for save_dir in (model_dir, os.path.join(model_dir, "compressed")):
        with pytest.raises(cli.InputError, match="contains or lies inside the input"):
            run.main(["--config_path", config, "--save_dir", save_dir])
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(cli.InputError, match="not empty: choose another folder or pass --overwrite"):
        run.main(["--config_path", config, "--save_dir", str(out)])
    assert os.listdir(out) == ["mine.txt"]


def test_missing_data_names_both_ways(trace_model, tmp_path, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    config = write_yaml(tmp_path / "c.yaml", base_config(trace_model, str(tmp_path / "no_glue")))
    with pytest.raises(FileNotFoundError, match="--data_dir or the GLUE_DIR environment variable"):
        run.main(["--config_path", config, "--eval"])


def test_ranks_under_the_distributed_launcher(trace_model, tmp_path, monkeypatch):
    """As `python -m paddle.distributed.launch --gpus 0,1 run.py ...` starts it (the launcher's variables
    set here; Paddle 2.6's collectives need a GPU build): each rank compresses on its own shard of the
    training data, and only rank 0 evaluates and writes the output."""
    data_dir = write_sst2_fixture(tmp_path / "glue", n_train=10)
    config = base_config(trace_model, data_dir)
    del config["TrainConfig"]
    config["QuantPost"] = {"quantize_op_types": ["matmul_v2"], "batch_size": 2, "batch_nums": 1}
    path = write_yaml(tmp_path / "c.yaml", config)
    shards = {}
    loader = glue.paddle_feed_loader

    def spy(features, *args, **kwargs):
        shards[os.environ["PADDLE_TRAINER_ID"]] = [tuple(f["input_ids"]) for f in features]
        return loader(features, *args, **kwargs)

    monkeypatch.setattr(glue, "paddle_feed_loader", spy)
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    save_dir = tmp_path / "out"
    for rank in ("1", "0"):
        monkeypatch.setenv("PADDLE_TRAINER_ID", rank)
        result = run.main(["--config_path", path, "--save_dir", str(save_dir)])
        if rank == "1":
            assert result == {"mode": "compress", "rank": 1, "world_size": 2, "strategies": ["quant_post"]}
            assert not save_dir.exists()  # rank 0 writes it
    assert result["world_size"] == 2 and result["train_examples"] == 5 and result["metrics_before"]
    with open(save_dir / "results.json") as f:
        assert json.load(f) == result
    assert len(shards["0"]) == len(shards["1"]) == 5
    assert sorted(shards["0"] + shards["1"]) == sorted(
        tuple(f["input_ids"]) for f in glue.convert_examples(glue.read_split(data_dir, "sst-2", "train"),
                                                             glue.load_tokenizer(trace_model), SEQ, "sst-2"))
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_paddleslim_fixes_are_undone_on_exit(tmp_path, trace_model):
    """Every patch of workarounds.paddleslim_fixed holds inside the with block and is gone after it."""
    import paddle
    from paddle.base.framework import IrGraph
    from paddle.static.quantization import post_training_quantization as ptq
    from paddleslim.auto_compression import compressor, create_compressed_program, transformer_pruner
    from paddleslim.quant import post_quant_hpo

    import files

    def current():
        return (compressor.AutoCompression.single_strategy_compress, compressor.AutoCompression.compress,
                compressor.quant_post, post_quant_hpo.quant_post, transformer_pruner.kl_div_op,
                ptq.PostTrainingQuantization._sample_histogram, IrGraph.all_op_nodes,
                create_compressed_program.quant_aware)

    before, cwd = current(), os.getcwd()
    program = files.read_program(os.path.join(trace_model, "model.pdmodel"))
    with workarounds.paddleslim_fixed(program, str(tmp_path), skip_tensor_list=["w_0"]) as ran:
        inside = current()
        assert all(a is not b for a, b in zip(before, inside))
        assert os.getcwd() == str(tmp_path) and not paddle.in_dynamic_mode() and ran == []
    assert current() == before and os.getcwd() == cwd and paddle.in_dynamic_mode()
