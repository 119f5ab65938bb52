"""infer.py on the tiny converted model: both modes, the result file, contradictory flags, bad input."""
import json
import os
import shutil

import numpy as np
import pytest

import cli
import infer
import predictors
import run
import workarounds
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
    # every dev row's prediction beside its label, in dev-file order: the accuracy recomputed from them
    with open(tmp_path / "infer" / "predictions.json") as f:
        rows = json.load(f)["dev"]
    labels = [int(line.split("\t")[1]) for line in open(os.path.join(data_dir, "SST-2", "dev.tsv")).read().splitlines()[1:]]
    assert rows["label"] == labels and len(rows["prediction"]) == len(labels)
    assert np.mean(np.array(rows["prediction"]) == labels) == pytest.approx(result["metrics"]["acc"])

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
    assert result["cpu_threads"] >= 1 and result["mkldnn"] is True


def test_measure_times_only_the_timed_batches_and_counts_their_rows():
    calls = []
    batches = [{"input_ids": np.zeros((3, 4))}, {"input_ids": np.zeros((5, 4))}]
    result = infer.measure(lambda feeds: calls.append(len(feeds["input_ids"])), batches, warmup_steps=3, steps=4)
    assert calls == [3, 5, 3] + [3, 5, 3, 5]  # warm-up, then the timed batches from the first one again
    assert result["timed_batches"] == 4 and result["timed_sequences"] == 16 and result["warmup_batches"] == 3


@pytest.mark.parametrize("flags, message", [
    (["--int8", "--fp16", "--device", "gpu", "--use_trt"], "--int8, --fp16 and --bf16 exclude each other"),
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
    with pytest.raises(cli.InputError, match="missing .*nope.pdmodel.*pass the path prefix"):
        infer.main(argv + ["--model_name_or_path", trace_model])


def test_tokenizer_vocab_mismatch(trace_model, data_dir, tmp_path):
    other = save_tiny_model(tmp_path / "other", vocab_extra=7)
    with pytest.raises(cli.InputError, match="has 106 tokens but the model's word embeddings have 99"):
        infer.main(base_argv(trace_model, data_dir, tmp_path / "out") + ["--model_name_or_path", other])


def test_seq_len_of_trace_model(trace_model, data_dir, tmp_path):
    argv = base_argv(trace_model, data_dir, tmp_path / "out")
    argv[argv.index("--max_seq_length") + 1] = "32"
    with pytest.raises(cli.InputError, match=f"fixed at {SEQ} .*not 32"):
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
    fake_quant = predictors.cpu_predictor(os.path.join(ptq_model, "model"))(feeds)
    config = infer.make_config(args.model_path, args.device, args.cpu_threads, args.enable_mkldnn, infer.cpu_int8_ops(args))
    int8 = predictors.predict_fn(inference.create_predictor(config))(feeds)
    # `--cpu_int8_ops all` (attention matmuls in int8 too) gives 0.975 here, and 0.52 accuracy on SST-2
    assert np.corrcoef(int8.ravel(), fake_quant.ravel())[0, 1] > 0.99
    assert (int8.argmax(1) == fake_quant.argmax(1)).mean() >= 0.9
    # ... and int8 kernels ran: the same model with oneDNN in fp32 computes the fake-quant graph's
    # arithmetic up to float rounding, the int8 run differs by more than that
    fp32 = predictors.cpu_predictor(predictors.edited_model(os.path.join(ptq_model, "model"),
                                                            workarounds.dequantize_weights))(feeds)
    rounding, quantization = np.abs(fp32 - fake_quant).max(), np.abs(int8 - fake_quant).max()
    assert rounding < 1e-4 < quantization and rounding < quantization / 100
    result = infer.main(base_argv(ptq_model, data_dir, tmp_path) + ["--int8"])
    assert result["precision"] == "int8" and result["cpu_int8_ops"] == ["fc"]


def test_run_scores_a_quantized_model_as_infer_deploys_it(ptq_model, data_dir, tmp_path):
    """run.py's metric after PTQ is infer.py --int8's (the deploy path), not the fake-quant graph's."""
    with open(os.path.join(ptq_model, "results.json")) as f:
        compressed = json.load(f)
    paths = compressed["evaluated_with"]
    assert paths["before"]["precision"] == "fp32" and paths["before"]["cpu_int8_ops"] is None
    assert paths["after"] == {"backend": "paddle-inference", "device": "cpu", "precision": "int8",
                              "cpu_int8_ops": ["fc"], "int8_weight_bits": predictors.onednn_weight_bits()}
    deployed = infer.main(base_argv(ptq_model, data_dir, tmp_path) + ["--int8"])
    assert compressed["metrics_after"] == deployed["metrics"]
    evaluated = run.main(["--config_path", os.path.join(os.path.dirname(ptq_model), "ptq.yaml"), "--eval",
                          "--model_dir", ptq_model, "--save_dir", str(tmp_path / "eval")])
    assert evaluated["evaluated_with"]["precision"] == "int8" and evaluated["metrics"] == deployed["metrics"]



def skew_square_weight_scales(model_dir, out_prefix):
    """Copy of a quantized model whose square weights' per-output-channel scales differ by up to 10x,
    so that scaling along the wrong axis shows (random tiny weights have near-equal scales)."""
    import paddle

    paddle.enable_static()
    try:
        scope, exe = paddle.static.Scope(), paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(scope):
            program, feed_names, fetch_vars = paddle.static.load_inference_model(os.path.join(model_dir, "model"), exe)
            block = program.global_block()
            skewed = 0
            for op in block.ops:
                weight = block.var(op.input("X")[0]) if op.type == "dequantize_linear" else None
                if weight is not None and weight.persistable and len(set(weight.shape)) == 1:
                    tensor = scope.find_var(op.input("Scale")[0]).get_tensor()
                    scale = np.array(tensor)
                    tensor.set(scale * np.linspace(0.1, 1.0, scale.size).reshape(scale.shape).astype(np.float32),
                               paddle.CPUPlace())
                    skewed += 1
            paddle.static.save_inference_model(out_prefix, [block.var(n) for n in feed_names], fetch_vars, exe,
                                               program=program, clip_extra=False)
    finally:
        paddle.disable_static()
    return skewed


def test_cpu_int8_dequantizes_square_weights_along_their_output_axis(ptq_model, data_dir, tmp_path):
    """The workaround for Paddle 2.6's quant_dequant_mkldnn_pass, which scales square weights along
    the wrong axis (the tiny model's q/k/v/output projections are 32 x 32)."""
    from paddle import inference

    prefix = str(tmp_path / "skewed" / "model")
    assert skew_square_weight_scales(ptq_model, prefix) >= 8  # q, k, v, output of both layers
    feeds = random_feeds(16, SEQ, seed=4)
    fake_quant = predictors.cpu_predictor(prefix)(feeds)

    program, params = predictors.edited_model(prefix, workarounds.dequantize_weights)
    exact = inference.Config()
    exact.set_model_buffer(program, len(program), params, len(params))
    exact.disable_mkldnn()
    exact.switch_ir_optim(False)
    # the fp32 weights are what the fake-quant graph's weight dequantize_linear computes
    np.testing.assert_allclose(predictors.predict_fn(inference.create_predictor(exact))(feeds), fake_quant,
                               rtol=1e-5, atol=1e-6)

    args = infer.parse_args(base_argv(str(tmp_path / "skewed"), data_dir, tmp_path) + ["--int8"])
    config = infer.make_config(args.model_path, args.device, args.cpu_threads, args.enable_mkldnn, infer.cpu_int8_ops(args))
    fixed = predictors.predict_fn(inference.create_predictor(config))(feeds)
    paddles = inference.Config(prefix + ".pdmodel", prefix + ".pdiparams")  # Paddle's own weight conversion
    paddles.set_cpu_math_library_num_threads(args.cpu_threads)
    paddles.enable_mkldnn()
    paddles.enable_mkldnn_int8({"fc"})
    unfixed = predictors.predict_fn(inference.create_predictor(paddles))(feeds)
    error, paddle_error = (np.abs(x - fake_quant).mean() for x in (fixed, unfixed))
    # 3x smaller on AVX-512 VNNI; about 2.9x on an AVX2-only CPU, whose int8 kernels err more themselves
    assert error < paddle_error / 2


def save_toy_quantized_fc(prefix, seed=0, rows=24, inputs=16, outputs=40):
    """A one-layer model stored as PaddleSlim's onnx_format PTQ stores one: x -> quantize/dequantize_linear
    -> matmul_v2 with an int8 weight (per-output-channel scales, its dequantize_linear) -> + bias.
    The activation is on its int8 grid. Returns (x, int8 weights, their scales, bias)."""
    import paddle

    rng = np.random.default_rng(seed)
    x_scale = 3.0
    x = (rng.integers(-127, 128, (1, rows, inputs)) * x_scale / 127).astype(np.float32)
    q = 2 * rng.integers(-30, 31, (inputs, outputs))
    q[rng.integers(0, inputs, outputs), np.arange(outputs)] = 127 * rng.choice([-1, 1], outputs)  # as abs_max stores
    w_scale = rng.uniform(0.01, 2.0, outputs).astype(np.float32)  # column maxima 200x apart
    bias = rng.normal(0, 1, outputs).astype(np.float32)
    paddle.enable_static()
    try:
        main = paddle.static.Program()
        with paddle.static.program_guard(main, paddle.static.Program()):
            block = main.global_block()
            scope, values = paddle.static.Scope(), {}

            def const(name, value, dtype="float32"):
                values[name] = np.asarray(value, dtype=dtype)
                return block.create_var(name=name, shape=list(values[name].shape), dtype=dtype, persistable=True)

            def linear_op(kind, x_var, scale, zero, axis, shape, name):
                out = block.create_var(name=name, shape=shape, dtype="float32")
                block.append_op(type=kind, inputs={"X": [x_var], "Scale": [scale], "ZeroPoint": [zero]},
                                outputs={"Y": [out]}, attrs={"quant_axis": axis, "bit_length": 8})
                return out

            feed = paddle.static.data("x", [-1, rows, inputs], "float32")
            a = const("x_scale", [x_scale])
            act = linear_op("dequantize_linear", linear_op("quantize_linear", feed, a, const("x_zero", [0.0]), -1,
                                                           [-1, rows, inputs], "x.quantized"),
                            a, const("x_zero2", [0.0]), -1, [-1, rows, inputs], "x.dequantized")
            weight = linear_op("dequantize_linear", const("w", q, "int8"), const("w_scale", w_scale),
                               const("w_zero", np.zeros(outputs)), 1, [inputs, outputs], "w.dequantized")
            out = paddle.add(paddle.matmul(act, weight), const("b", bias))
            exe = paddle.static.Executor(paddle.CPUPlace())
            with paddle.static.scope_guard(scope):
                for name, value in values.items():
                    scope.var(name).get_tensor().set(value, paddle.CPUPlace())
                paddle.static.save_inference_model(prefix, [feed], [out], exe, program=main)
    finally:
        paddle.disable_static()
    return x, q, w_scale, bias


@pytest.mark.parametrize("weight_bits", [8, 7])
def test_cpu_int8_quantizes_each_weight_column_on_its_own_scale(tmp_path, monkeypatch, weight_bits):
    """The workaround for Paddle 2.6's compute_propagate_scales_mkldnn_pass, which takes an fc weight's
    per-output-channel scales from runs of consecutive values instead of its columns: oneDNN's int8
    layer now computes the quantized model's int8 arithmetic exactly, as one fc op (no op added)."""
    prefix = str(tmp_path / "model")
    x, q, w_scale, bias = save_toy_quantized_fc(prefix)
    step = 2 ** (8 - weight_bits)  # 7 bits: every other value of each column's int8 grid (numpy rounds half to even, as oneDNN)
    exact = x @ (np.round(q / step) * step * w_scale / 127) + bias
    monkeypatch.setattr(predictors, "onednn_weight_bits", lambda: weight_bits)
    if weight_bits == 8 and not predictors.has_int8_dot_product() and "avx2" in predictors.cpu_flags():
        pytest.skip("8-bit weights saturate this CPU's int8 kernels (no VNNI/AMX)")
    fixed = predictors.cpu_predictor(prefix, int8_ops=["fc"])({"x": x})
    np.testing.assert_allclose(fixed, exact, rtol=1e-4, atol=1e-4)
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc.FromString(predictors.optimized_int8_model(prefix, 1, ["fc"])[0])
    types = [op.type for op in program.blocks[0].ops]
    assert types.count("fc") == 1 and "elementwise_mul" not in types
    monkeypatch.setattr(workarounds, "onednn_fc_weight_scales", lambda program, *args, **kwargs: program)
    unfixed = predictors.cpu_predictor(prefix, int8_ops=["fc"])({"x": x})
    assert np.abs(unfixed - exact).max() > 100 * np.abs(fixed - exact).max() + 0.1


def test_perf_times_full_batches_when_dev_is_small(trace_model, data_dir, tmp_path):
    """The fixture's dev set has 20 rows: a batch of 32 repeats rows rather than timing a batch of 20."""
    argv = base_argv(trace_model, data_dir, tmp_path) + ["--perf", "--perf_warmup_steps", "1", "--perf_steps", "3"]
    argv[argv.index("--batch_size") + 1] = "32"
    result = infer.main(argv)
    assert result["batch_size"] == 32 and result["timed_sequences"] == 3 * 32 and result["distinct_rows"] == 20


def test_int8_needs_a_quantized_model(trace_model, data_dir, tmp_path):
    with pytest.raises(cli.InputError, match="--int8 needs a quantized model .* drop --int8"):
        infer.main(base_argv(trace_model, data_dir, tmp_path) + ["--int8"])
    assert not os.path.exists(tmp_path / "results.json")


def test_quantized_model_without_int8_warns(ptq_model, data_dir, tmp_path, capsys):
    infer.main(base_argv(ptq_model, data_dir, tmp_path) + ["--perf", "--perf_steps", "1"])
    assert "is quantized but runs without --int8" in capsys.readouterr().err


def test_gpu_needs_a_cuda_build(trace_model, data_dir, tmp_path):
    import paddle

    if paddle.device.is_compiled_with_cuda():
        pytest.skip("a CUDA build of Paddle: --device gpu is allowed")
    argv = base_argv(trace_model, data_dir, tmp_path)
    argv[argv.index("--device") + 1] = "gpu"
    with pytest.raises(cli.InputError, match="needs Paddle's CUDA build .*pass --device cpu"):
        infer.main(argv)


# ---------------------------------------------------------------------------------- --backend openvino
def test_openvino_backend_scores_as_paddle(converted, data_dir, tmp_path):
    _, model_dir, _ = converted
    paddle_result = infer.main(base_argv(model_dir, data_dir, tmp_path / "paddle"))
    result = infer.main(base_argv(model_dir, data_dir, tmp_path / "openvino") + ["--backend", "openvino"])
    assert result["backend"] == "openvino" and result["precision"] == "fp32" and result["mkldnn"] is False
    assert result["int8_linear_layers"] == 0
    assert result["metrics"] == paddle_result["metrics"]


def test_openvino_int8_runs_the_linear_layers_in_int8(ptq_model, data_dir, tmp_path):
    """OpenVINO reads run.py's PTQ model (edited in memory) and its runtime model runs every linear
    layer in int8; the logits follow the fake-quant graph, and the accuracy is the Paddle backend's."""
    args = infer.parse_args(base_argv(ptq_model, data_dir, tmp_path) + ["--backend", "openvino", "--int8"])
    predict, facts = infer.openvino_predictor(args.model_path, args.cpu_threads, args.int8, args.bf16)
    assert facts["int8_linear_layers"] == 2 * 6 + 2  # q, k, v, out, 2 FFN per layer; pooler; classifier
    feeds = random_feeds(16, SEQ, seed=3)
    fake_quant = predictors.cpu_predictor(os.path.join(ptq_model, "model"))(feeds)
    int8 = predict(feeds)
    assert np.corrcoef(int8.ravel(), fake_quant.ravel())[0, 1] > 0.99
    assert (int8.argmax(1) == fake_quant.argmax(1)).mean() >= 0.9
    paddle_int8 = infer.main(base_argv(ptq_model, data_dir, tmp_path / "paddle") + ["--int8"])
    result = infer.main(base_argv(ptq_model, data_dir, tmp_path / "openvino") + ["--backend", "openvino", "--int8"])
    assert result["precision"] == "int8" and result["int8_linear_layers"] == 14
    assert abs(result["metrics"]["acc"] - paddle_int8["metrics"]["acc"]) <= 0.005
    assert result["seven_bit_weights"] == (not predictors.has_int8_dot_product())


def test_openvino_int8_edit_keeps_paddles_answer(ptq_model):
    """The edit OpenVINO needs changes nothing Paddle computes beyond dropping the observer and
    attention quantization (and halving weights to 7 bits where asked)."""
    from paddle import inference

    feeds = random_feeds(16, SEQ, seed=5)
    prefix = os.path.join(ptq_model, "model")
    fake_quant = predictors.cpu_predictor(prefix)(feeds)
    program, params = predictors.edited_model(prefix, infer.openvino_int8_edit(seven_bit_weights=False))
    config = inference.Config()
    config.set_model_buffer(program, len(program), params, len(params))
    config.disable_mkldnn()
    edited = predictors.predict_fn(inference.create_predictor(config))(feeds)
    assert np.corrcoef(edited.ravel(), fake_quant.ravel())[0, 1] > 0.99
    assert (edited.argmax(1) == fake_quant.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("flags, message", [
    (["--backend", "openvino", "--device", "gpu"], "--backend openvino runs on --device cpu"),
    (["--bf16"], "--bf16 needs --backend openvino"),
    (["--backend", "openvino", "--bf16", "--int8"], "--int8, --fp16 and --bf16 exclude each other"),
])
def test_openvino_flags(flags, message, capsys):
    with pytest.raises(SystemExit):
        infer.parse_args(["--model_path", "m", "--device", "cpu"] + flags)
    assert message in capsys.readouterr().err


def test_openvino_refuses_a_quantized_model_without_int8(ptq_model, data_dir, tmp_path):
    with pytest.raises(cli.InputError, match="is quantized: pass --int8"):
        infer.main(base_argv(ptq_model, data_dir, tmp_path) + ["--backend", "openvino"])


def test_openvino_bf16(trace_model, data_dir, tmp_path):
    import openvino as ov

    argv = base_argv(trace_model, data_dir, tmp_path) + ["--backend", "openvino", "--bf16"]
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(cli.InputError, match="no bf16 support"):
            infer.main(argv)
    else:
        fp32 = infer.main(base_argv(trace_model, data_dir, tmp_path / "fp32") + ["--backend", "openvino"])
        result = infer.main(argv)
        assert result["precision"] == "bf16"
        assert abs(result["metrics"]["acc"] - fp32["metrics"]["acc"]) <= 0.1


def test_a_run_logged_to_a_file_is_plain_lines(ptq_model, data_dir, tmp_path):
    """Off a terminal: progress bars as whole lines (no carriage-return fragments), no third-party noise."""
    import subprocess
    import sys

    from conftest import ROOT

    config = os.path.join(os.path.dirname(ptq_model), "ptq.yaml")
    out = subprocess.run([sys.executable, "run.py", "--config_path", config, "--save_dir", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\r" not in out.stderr and "eval before sst-2 dev" in out.stderr
    for noise in ("pkg_resources is deprecated", "Setuptools is replacing distutils", "New Executor is Running"):
        assert noise not in out.stderr
    assert out.stdout.startswith("compressed sst-2 (quant_post)")
