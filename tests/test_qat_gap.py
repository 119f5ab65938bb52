"""benchmarks/qat_gap.py: the QAT model's attention taken out of its fake-quant graph."""
import pytest

import cli  # (first: loads the system zlib before anything imports paddle)
from conftest import load_benchmark


@pytest.fixture(scope="module")
def qat_gap():
    return load_benchmark("qat_gap")


def fake_quant_program():
    """A saved QAT model's pattern: a linear layer (activation through a quantize/dequantize pair, weight through
    a dequantize_linear) and a matmul of two activations, each through its pair."""
    import paddle

    paddle.enable_static()
    program = paddle.static.Program()
    block = program.global_block()

    def var(name, persistable=False):
        return block.create_var(name=name, shape=[2, 4], dtype="float32", persistable=persistable)

    def through(op_type, name):
        scale, zero = var(f"{name}.scale", True), var(f"{name}.zero", True)
        out = var(f"{name}.{op_type}")
        block.append_op(type=op_type, inputs={"X": [block.var(name)], "Scale": [scale], "ZeroPoint": [zero]},
                        outputs={"Y": [out]}, attrs={"bit_length": 8, "quant_axis": -1})
        return out.name

    def pair(name):
        return through("dequantize_linear", through("quantize_linear", name))

    for name in ("x", "q", "k"):
        var(name)
    var("w", persistable=True)
    for x, y, out in ((pair("x"), through("dequantize_linear", "w"), "linear"), (pair("q"), pair("k"), "scores")):
        block.append_op(type="matmul_v2", inputs={"X": [block.var(x)], "Y": [block.var(y)]},
                        outputs={"Out": [var(out)]}, attrs={"trans_x": False, "trans_y": False})
    paddle.disable_static()
    return block


def test_only_the_matmul_of_two_activations_reads_past_its_pairs(qat_gap):
    block = fake_quant_program()
    assert qat_gap.unquantize_attention(block, None) == 2
    linear, scores = [op for op in block.ops if op.type == "matmul_v2"]
    assert scores.input_arg_names == ["q", "k"]
    assert linear.input_arg_names == ["x.quantize_linear.dequantize_linear", "w.dequantize_linear"]
    assert qat_gap.unquantize_attention(block, None) == 0  # nothing left to rewire


def test_a_task_without_a_qat_model_is_one_error_line(qat_gap, tmp_path):
    with pytest.raises(cli.InputError, match="^no distill \\+ QAT model of rte .*--tasks rte first$"):
        qat_gap.main(["--tasks", "rte", "--work_dir", str(tmp_path), "--save_dir", str(tmp_path / "out")])
    with pytest.raises(cli.InputError, match="^sts-b is a regression task"):
        qat_gap.main(["--tasks", "sts-b", "--work_dir", str(tmp_path), "--save_dir", str(tmp_path / "out")])
