"""infer.py on the tiny converted model: both modes, the result file, contradictory flags, bad input."""
import json
import os
import shutil

import numpy as np
import pytest

import glue
import infer
import run
from conftest import SEQ, random_feeds, save_tiny_model, write_sst2_fixture


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_sst2_fixture(tmp_path_factory.mktemp("glue"))


def base_argv(model_dir, data_dir, save_dir):
    return ["--task_name", "sst2", "--model_path", os.path.join(model_dir, "model"), "--device", "cpu",
            "--max_seq_length", str(SEQ), "--batch_size", "8", "--data_dir", data_dir, "--save_dir", str(save_dir)]


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        infer.main(["--help"])
    assert exit_info.value.code == 0
    assert "--use_trt" in capsys.readouterr().out


def test_accuracy_equals_run_eval(converted, data_dir, tmp_path):
    """Accuracy through infer.py equals run.py --eval on the same model (both methods)."""
    _, model_dir, _ = converted
    result = infer.main(base_argv(model_dir, data_dir, tmp_path / "infer"))
    with open(tmp_path / "infer" / "results.json") as f:
        assert json.load(f) == result
    assert result["mode"] == "accuracy" and result["precision"] == "fp32" and result["backend"] == "paddle-inference"

    config = tmp_path / "c.yaml"
    config.write_text(f"Global:\n  model_dir: {model_dir}\n  task_name: sst-2\n  batch_size: 8\n"
                      f"  max_seq_length: {SEQ}\n  data_dir: {data_dir}\n")
    evaluated = run.main(["--config_path", str(config), "--eval", "--save_dir", str(tmp_path / "run")])
    assert result["metrics"] == evaluated["metrics"]


def test_perf_counts(trace_model, data_dir, tmp_path):
    result = infer.main(base_argv(trace_model, data_dir, tmp_path) + ["--perf", "--perf_warmup_steps", "2",
                                                                      "--perf_steps", "5"])
    assert result["mode"] == "perf" and result["timed_batches"] == 5 and result["timed_sequences"] == 5 * 8
    assert result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]
    assert result["sequences_per_second"] == pytest.approx(1000.0 / result["ms_per_sequence"])
    assert result["cpu_threads"] >= 1 and result["mkldnn"] is True


@pytest.mark.parametrize("flags, message", [
    (["--int8", "--fp16", "--device", "gpu", "--use_trt"], "--int8 and --fp16 exclude each other"),
    (["--use_trt"], "--use_trt needs --device gpu"),
    (["--fp16"], "--fp16 needs --device gpu"),
    (["--int8", "--no-enable_mkldnn"], "--int8 on cpu runs oneDNN int8 kernels"),
    (["--task_name", "wnli"], "unknown GLUE task 'wnli'"),
])
def test_contradictory_flags(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        infer.parse_args(["--model_path", "m", "--device", "cpu"] + flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_model_files(trace_model, tmp_path, data_dir):
    argv = base_argv(trace_model, data_dir, tmp_path / "out")
    argv[argv.index("--model_path") + 1] = str(tmp_path / "nope")
    with pytest.raises(glue.InputError, match="missing .*nope.pdmodel.*pass the path prefix"):
        infer.main(argv + ["--model_name_or_path", trace_model])


def test_tokenizer_vocab_mismatch(trace_model, data_dir, tmp_path):
    other = save_tiny_model(tmp_path / "other", vocab_extra=7)
    with pytest.raises(glue.InputError, match="has 106 tokens but the model's word embeddings have 99"):
        infer.main(base_argv(trace_model, data_dir, tmp_path / "out") + ["--model_name_or_path", other])


def test_seq_len_of_trace_model(trace_model, data_dir, tmp_path):
    argv = base_argv(trace_model, data_dir, tmp_path / "out")
    argv[argv.index("--max_seq_length") + 1] = "32"
    with pytest.raises(glue.InputError, match=f"fixed at {SEQ} .*not 32"):
        infer.main(argv)


def test_task_without_dev_data(trace_model, data_dir, tmp_path):
    partial = tmp_path / "glue"
    shutil.copytree(data_dir, partial)
    os.remove(partial / "SST-2" / "dev.tsv")
    with pytest.raises(FileNotFoundError, match="--data_dir or the GLUE_DIR"):
        infer.main(base_argv(trace_model, str(partial), tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ptq_model(trace_model, data_dir, tmp_path_factory):
    """The tiny trace model after run.py's post-training quantization (onnx_format Q/DQ pairs)."""
    tmp = tmp_path_factory.mktemp("ptq")
    config = tmp / "ptq.yaml"
    config.write_text(f"Global:\n  model_dir: {trace_model}\n  task_name: sst-2\n  batch_size: 4\n"
                      f"  max_seq_length: {SEQ}\n  data_dir: {data_dir}\n"
                      "QuantPost:\n  quantize_op_types: [matmul, matmul_v2]\n  onnx_format: true\n"
                      "  batch_size: 4\n  batch_nums: 2\n")
    run.main(["--config_path", str(config), "--save_dir", str(tmp / "out")])
    return str(tmp / "out")


def test_cpu_int8_runs_linear_layers_in_int8(ptq_model, data_dir, tmp_path):
    """--int8 on cpu: oneDNN int8 linears agree with the quantized model run as-is (fake quant)."""
    from paddle import inference

    args = infer.parse_args(base_argv(ptq_model, data_dir, tmp_path) + ["--int8"])
    assert args.cpu_int8_ops == ["fc"]
    feeds = random_feeds(16, SEQ, seed=3)
    fake_quant = glue.cpu_predictor(os.path.join(ptq_model, "model.pdmodel"),
                                    os.path.join(ptq_model, "model.pdiparams"))[0](feeds)
    int8 = glue.predict_fn(inference.create_predictor(infer.make_config(args)))(feeds)
    # `--cpu_int8_ops all` (attention matmuls in int8 too) gives 0.975 here, and 0.52 accuracy on SST-2
    assert np.corrcoef(int8.ravel(), fake_quant.ravel())[0, 1] > 0.99
    assert (int8.argmax(1) == fake_quant.argmax(1)).mean() >= 0.9
    result = infer.main(base_argv(ptq_model, data_dir, tmp_path) + ["--int8"])
    assert result["precision"] == "int8" and result["cpu_int8_ops"] == ["fc"]
