"""benchmarks/op_profile.py: per-op-type time of the models reproduce.py keeps for a task."""
import json
import os

import pytest

import cli  # noqa: F401  (loads the system zlib before anything imports paddle)
from conftest import SEQ, load_benchmark


@pytest.fixture(scope="module")
def op_profile():
    return load_benchmark("op_profile")


def test_profiles_each_model_of_the_task(op_profile, trace_model, tmp_path):
    """The converted tiny BERT as a task's base: its ops are timed in a process of their own and tabled."""
    work = tmp_path / "work"
    (work / "sts-b").mkdir(parents=True)
    os.symlink(trace_model, work / "sts-b" / "paddle-fp32")
    out = tmp_path / "out"
    op_profile.main(["--task", "sts-b", "--work_dir", str(work), "--save_dir", str(out), "--batch_size", "2",
                     "--max_seq_length", str(SEQ), "--runs", "2", "--cpu_threads", "1"])
    with open(out / "results.json") as f:
        results = json.load(f)
    base = results["models"]["base"]
    assert list(results["models"]) == ["base"] and base["precision"] == "fp32"
    assert base["wall_ms"] > 0 and base["ops"].get("fc", 0) > 0 and sum(base["ops"].values()) <= 10 * base["wall_ms"]
    text = (out / "RESULTS.md").read_text()
    assert "| fc | " in text and f"| **wall** | {base['wall_ms']:.1f} (1.00×) |" in text


def test_no_models_is_one_error_line(op_profile, tmp_path):
    with pytest.raises(cli.InputError, match="run benchmarks/reproduce.py --tasks rte first"):
        op_profile.main(["--task", "rte", "--work_dir", str(tmp_path), "--save_dir", str(tmp_path / "out")])


def test_ceiling_of_int8_linear_layers(op_profile):
    """fc 200 of 240 ms in the base, 50 in the int8 model: 4.00× on fc, and at most 240 / (40 + 50) = 2.67×."""
    models = {"base": {"precision": "fp32", "ops": {"fc": 200.0, "softmax": 40.0}},
              "ptq": {"precision": "int8", "ops": {"fc": 50.0, "softmax": 45.0, "quantize": 10.0}}}
    assert "| PTQ | 50.0 | 4.00× | 2.67× |" in op_profile.ceiling(models)
    assert op_profile.ceiling({"base": models["base"]}) == []
