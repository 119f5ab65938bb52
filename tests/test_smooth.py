import os

import numpy as np
import pytest

import run
import smooth
from conftest import SEQ, load_model, random_feeds
from test_run import ptq_config


@pytest.fixture
def outlier_model(trace_model):
    """The tiny converted BERT with one LayerNorm channel made 30 times larger (a BERT's outlier
    channel), in a static program and scope of its own: (program, feed names, fetch vars, scope, exe)."""
    import paddle

    paddle.enable_static()
    scope, exe = paddle.static.Scope(), paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(scope):
        program, feeds, fetches = paddle.static.load_inference_model(os.path.join(trace_model, "model"), exe)
    block = program.global_block()
    norm = next(op for op in block.ops if op.type == "layer_norm" and op.output("Y")[0] in smooth.linear_inputs(block))
    for name in (norm.input("Scale")[0], norm.input("Bias")[0]):
        value = np.array(scope.find_var(name).get_tensor())
        value[0] *= 30
        scope.find_var(name).get_tensor().set(value, paddle.CPUPlace())
    yield program, feeds, fetches, scope, exe, norm.output("Y")[0]
    paddle.disable_static()


def test_smoothing_keeps_the_fp32_outputs_and_flattens_the_outlier(outlier_model):
    import paddle

    program, feeds, fetches, scope, exe, outlier = outlier_model
    batches = [{n: v for n, v in zip(feeds, random_feeds(4, SEQ, seed).values())} for seed in range(3)]
    with paddle.static.scope_guard(scope):
        before = [exe.run(program, feed=b, fetch_list=fetches)[0] for b in batches]
        block = program.global_block()
        layers = smooth.linear_inputs(block)
        ranges = smooth.channel_ranges(program, exe, list(layers), batches)
        assert int(np.argmax(ranges[outlier])) == 0
        report = smooth.smooth(block, scope, ranges, layers, alpha=0.75)
        after = [exe.run(program, feed=b, fetch_list=fetches)[0] for b in batches]
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    ratio_before, ratio_after = report[outlier]
    assert ratio_before > 10 and ratio_after < ratio_before / 3
    # every linear layer that read an activation now reads its smoothed copy, and nothing else does
    muls = {op.output("Out")[0]: op.input("X")[0] for op in block.ops if op.type == "elementwise_mul"
            and op.input("Y")[0].endswith(".smooth_inverse")}
    assert sorted(muls.values()) == sorted(layers)
    for x, readers in layers.items():
        assert all(op.input("X")[0] == x + ".smoothed" for op, _ in readers)
    assert any(x in op.input_arg_names for x in layers for op in block.ops if op.type == "elementwise_add")


def test_run_calibrates_a_smoothed_model(trace_model, tmp_path):
    """QuantPost.smooth_alpha: run.py's PTQ model reads each linear layer's input through its
    smoothing op; a layer in skip_tensor_list keeps reading the activation as it is."""
    layers = smooth.linear_inputs(load_model(os.path.join(trace_model, "model"))[0])
    shared, readers = next((x, r) for x, r in layers.items() if len(r) == 3)  # q, k and v read one LayerNorm
    skipped = readers[0][1]
    config = ptq_config(trace_model, tmp_path, batch_size=4, batch_nums=2, smooth_alpha=0.5,
                        skip_tensor_list=[skipped])
    result = run.main(["--config_path", config, "--save_dir", str(tmp_path / "out")])
    assert result["config"]["QuantPost"]["smooth_alpha"] == 0.5
    assert result["evaluated_with"]["after"]["precision"] == "int8"
    block = load_model(str(tmp_path / "out" / "model"))[0]
    producer = {name: op for op in block.ops for name in op.output_arg_names}

    def source(name):  # through the quantize/dequantize pairs PaddleSlim puts on activations and weights
        while name in producer and producer[name].type in ("quantize_linear", "dequantize_linear"):
            name = producer[name].input("X")[0]
        return name

    assert {source(op.input("X")[0]) for op in block.ops if op.type == "elementwise_mul"
            and op.input("Y")[0].endswith(".smooth_inverse")} == set(layers)

    reads = {source(n): source(op.input("X")[0]) for op in block.ops if op.type in smooth.LINEAR_TYPES
             for n in op.input_arg_names if n != op.input("X")[0]}
    assert reads[skipped] == shared
    assert [reads[w] for _, w in readers[1:]] == [shared + ".smoothed"] * 2


def test_smoothing_sees_the_calibration_batches(trace_model, tmp_path, monkeypatch):
    """The channel ranges come from the very batches PTQ then calibrates on (numpy's random state,
    which orders them, is put back after the smoothing pass)."""
    import paddle

    seen, phase = {"smooth": [], "calibrate": []}, ["calibrate"]
    run_program, ranges = paddle.static.Executor.run, smooth.channel_ranges

    def recording_run(self, *args, feed=None, **kwargs):
        if isinstance(feed, dict) and "input_ids" in feed:
            seen[phase[0]] += [row.tobytes() for row in np.array(feed["input_ids"])]
        return run_program(self, *args, feed=feed, **kwargs)

    def smoothing_pass(*args, **kwargs):
        phase[0] = "smooth"
        try:
            return ranges(*args, **kwargs)
        finally:
            phase[0] = "calibrate"

    monkeypatch.setattr(paddle.static.Executor, "run", recording_run)
    monkeypatch.setattr(smooth, "channel_ranges", smoothing_pass)
    config = ptq_config(trace_model, tmp_path, batch_size=4, batch_nums=3, smooth_alpha=0.5)
    run.main(["--config_path", config, "--save_dir", str(tmp_path / "out")])
    assert len(seen["smooth"]) == 3 * 4 and len(set(seen["smooth"])) == 3 * 4  # batch_nums x batch_size rows
    assert seen["calibrate"] == seen["smooth"]
