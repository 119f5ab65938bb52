"""benchmarks/ptq_diagnostic.py: its layer groups of a converted BERT, and that a group quantized alone
is what run.py writes (the skip list reaches PaddleSlim)."""
import os

import pytest

import files
import predictors
import run
from conftest import SEQ, load_benchmark, load_model, write_sst2_fixture


@pytest.fixture(scope="module")
def diagnostic():
    return load_benchmark("ptq_diagnostic")


def quantized_weights(model_file):
    """The weights a saved PTQ model stores quantized (read by a dequantize_linear)."""
    block = files.read_program(model_file).blocks[0]
    persistable = {v.name for v in block.vars if v.persistable}
    return {n for op in block.ops if op.type == "dequantize_linear"
            for arg in op.inputs if arg.parameter == "X" for n in arg.arguments if n in persistable}


def int8_fc_weights(model_prefix):
    """The weights of the fc ops oneDNN runs in int8 when infer.py --int8 deploys the model."""
    from paddle.base.proto import framework_pb2

    program = predictors.optimized_int8_model(model_prefix, 1, {"fc"})[0]
    block = framework_pb2.ProgramDesc.FromString(program).blocks[0]
    return {arg.arguments[0] for op in block.ops if op.type == "fc"
            and any(a.name == "mkldnn_data_type" and a.s == "int8" for a in op.attrs)
            for arg in op.inputs if arg.parameter == "W"}


def test_layer_groups_of_the_tiny_bert(diagnostic, trace_model):
    groups, every = diagnostic.layer_groups(os.path.join(trace_model, "model.pdmodel"))
    # 2 layers x (6 linear + 2 attention matmuls) + pooler + classifier
    assert len(every) == len(set(every)) == 2 * 8 + 2
    assert [len(groups[f"encoder layer {i}"]) for i in range(2)] == [8, 8]
    assert len(groups["q, k, v (all layers)"]) == 6 and len(groups["FFN (all layers)"]) == 4
    assert len(groups["attention output (all layers)"]) == 2 and len(groups["attention matmuls (all layers)"]) == 4
    assert sorted(groups["FFN in (all layers)"] + groups["FFN out (all layers)"]) == sorted(groups["FFN (all layers)"])
    # the layers partition every quantizable matmul with the pooler and classifier; so do the kinds
    layers = groups["encoder layer 0"] + groups["encoder layer 1"] + groups["pooler + classifier"]
    kinds = sum((groups[k] for k in ("q, k, v (all layers)", "attention output (all layers)", "FFN (all layers)",
                                     "attention matmuls (all layers)", "pooler + classifier")), [])
    assert sorted(layers) == sorted(kinds) == sorted(every)
    # run.py's QuantPost.skip_head finds the same two by their one-row-per-sentence input
    assert run.head_weights(files.read_program(os.path.join(trace_model, "model.pdmodel"))) == groups[
        "pooler + classifier"]
    runs = diagnostic.variants(os.path.join(trace_model, "model.pdmodel"))
    # one change at a time from a config without smoothing or head skip, except the smoothed runs
    assert list(runs)[0] == "algo: hist (PaddleSlim's default)"
    plain = ["QuantPost.smooth_alpha=null", "QuantPost.skip_head=false"]
    assert runs["algo: KL"] == plain + ["QuantPost.algo=KL"]
    assert runs["bias correction"] == plain + ["QuantPost.algo=hist", "QuantPost.bias_correction=true"]
    assert runs[diagnostic.SHIPPED] == ["QuantPost.algo=avg", "QuantPost.smooth_alpha=0.75", "QuantPost.skip_head=true"]
    smoothed = {name for name, sets in runs.items() if "QuantPost.smooth_alpha=0.75" in sets}
    assert smoothed == {diagnostic.SHIPPED, diagnostic.SMOOTHED, diagnostic.ABS_MAX_SMOOTHED}
    assert all(sets[:2] == plain for name, sets in runs.items() if name not in smoothed)


def test_one_group_quantized_alone(diagnostic, trace_model, tmp_path):
    """The run that quantizes only encoder layer 0 writes a model whose quantized weights are that layer's."""
    data_dir = write_sst2_fixture(tmp_path / "glue")
    config = tmp_path / "ptq.yaml"
    config.write_text(f"Global:\n  model_dir: {trace_model}\n  task_name: sst-2\n  batch_size: 4\n"
                      f"  max_seq_length: {SEQ}\n  data_dir: {data_dir}\n"
                      "QuantPost:\n  quantize_op_types: [matmul, matmul_v2]\n  onnx_format: true\n"
                      "  batch_size: 4\n  batch_nums: 2\n")
    model_file = os.path.join(trace_model, "model.pdmodel")
    groups, _ = diagnostic.layer_groups(model_file)
    sets = diagnostic.variants(model_file)["only encoder layer 0"]
    result = run.main(["--config_path", str(config), "--save_dir", str(tmp_path / "out")]
                      + [a for s in sets for a in ("--set", s)])
    weights = set(groups["encoder layer 0"][:6])  # its linear layers; the last two are attention matmuls
    assert quantized_weights(str(tmp_path / "out" / "model.pdmodel")) == weights
    # ... and deployed with --int8, those layers alone run in int8 (workarounds.skipped_layers_kept_fp32)
    assert int8_fc_weights(str(tmp_path / "out" / "model")) == weights
    assert result["evaluated_with"]["after"]["precision"] == "int8"


def test_render_shows_each_change_against_fp32(diagnostic):
    def run_of(metric, precision="int8", own=True):
        return {"metrics": {"headline": metric}, "before": {"headline": 0.84}, "seconds": 61.0, "peak_rss_mb": 3072.0,
                "peak_rss_own": own, "evaluated_with": {"precision": precision}}

    results = {"machine": {"cpu": "test cpu", "cores": 2, "isa": ["avx2"], "python": "3.11.7"},
               "versions": {"paddlepaddle": "2.6.2"}, "command": "python benchmarks/ptq_diagnostic.py",
               "tasks": [{"task": "sst-2", "metric": "acc", "runs": {
                   "algo: hist (PaddleSlim's default)": run_of(0.8225),
                   "algo: avg": run_of(0.8300, own=False),  # measured before run_script read the script's own
                   "only attention matmuls (all layers)": run_of(0.84, "fp32")},
               "fake_quant": {"algo: avg": {"headline": 0.8350}}, "openvino": {"algo: avg": {"headline": 0.8325}}}]}
    text = diagnostic.render(results)
    assert "## sst-2 (acc, fp32 84.00)" in text
    assert "| algo: hist (PaddleSlim's default) | int8 | 82.25 | -1.75 | 61 | 3.0 |" in text
    assert "| only attention matmuls (all layers) | fp32 | 84.00 | +0.00 | 61 | 3.0 |" in text
    assert "| algo: avg | int8 | 83.00 | -1.00 | 61 | 3.0 † |" in text and text.count("† measured before") == 1
    assert "| run | oneDNN int8 | fake-quant graph | OpenVINO int8 |" in text
    assert "| algo: avg | 83.00 (-1.00) | 83.50 (-0.50) | 83.25 (-0.75) |" in text
    short = diagnostic.summary(results)  # the README's: calibration choices only, one column per task
    assert "| QuantPost calibration: one change from PaddleSlim's default (algo hist) | sst-2 acc (fp32 84.00) |" in short
    assert "| algo: hist (PaddleSlim's default) | 82.25 (-1.75) |" in short and "attention matmuls" not in short
    assert "| model | oneDNN int8 (`--int8`, on test cpu: avx2) |" in short
    assert "| sst-2, algo: avg | 83.00 (-1.00) | 83.50 (-0.50) | 83.25 (-0.75) |" in short


def test_max_new_runs_runs_the_next_ones_and_keeps_the_finished(diagnostic, trace_model, tmp_path, monkeypatch):
    """--max_new_runs 2: each invocation runs the next two runs not finished before, in order."""
    from types import SimpleNamespace

    ran = []

    def run_variant(task, base, config, sets, save_dir, data):
        ran.append(os.path.basename(save_dir))
        return {"metrics": {"headline": 0.5}, "evaluated_with": {"precision": "int8", "int8_weight_bits": 7}}

    monkeypatch.setattr(diagnostic.reproduce, "prepare_base", lambda task, args: trace_model)
    monkeypatch.setattr(diagnostic, "run_variant", run_variant)
    monkeypatch.setattr(diagnostic.common, "run_infer", lambda *a: {"metrics": {"headline": 0.4}})
    os.makedirs(tmp_path / "sst-2")  # prepare_base makes it
    args = SimpleNamespace(work_dir=str(tmp_path), data_dir=None, max_new_runs=2, draws=False)
    names = list(diagnostic.variants(os.path.join(trace_model, "model.pdmodel")))
    first = diagnostic.run_task("sst-2", args, lambda row: None)
    assert list(first["runs"]) == names[:2] and first["fake_quant"] == {"algo: avg": {"headline": 0.4}}
    assert first["openvino"] == {"algo: avg": {"headline": 0.4}}
    second = diagnostic.run_task("sst-2", args, lambda row: None)
    assert list(second["runs"]) == names[:4] and len(ran) == 4 and second["runs_planned"] == len(names)


def test_a_run_scored_before_the_weight_scale_fix_is_scored_again(diagnostic, trace_model, tmp_path, monkeypatch):
    """A finished run whose after-metric predates workarounds.onednn_fc_weight_scales gets its saved model scored
    again by infer.py --int8, once; the table shows that score, results.json keeps the old one too."""
    from types import SimpleNamespace

    old = {"metrics": {"headline": 0.5}, "evaluated_with": {"precision": "int8", "cpu_int8_ops": ["fc"]}}
    scored = []

    def run_infer(task, folder, flags, save_dir):
        scored.append((os.path.basename(folder), flags))
        return {"metrics": {"headline": 0.6}, "backend": "paddle-inference", "device": "cpu", "precision": "int8",
                "cpu_int8_ops": ["fc"], "int8_weight_bits": 7}

    monkeypatch.setattr(diagnostic.reproduce, "prepare_base", lambda task, args: trace_model)
    monkeypatch.setattr(diagnostic, "run_variant", lambda *a: old)
    monkeypatch.setattr(diagnostic.common, "run_infer", run_infer)
    os.makedirs(tmp_path / "sst-2")
    args = SimpleNamespace(work_dir=str(tmp_path), data_dir=None, max_new_runs=1, draws=False)
    first = diagnostic.run_task("sst-2", args, lambda row: None)
    name = next(iter(first["runs"]))
    assert scored == [(diagnostic.folder_of("", name).split(os.sep)[-1],
                       ["--batch_size", "32", "--max_seq_length", "128", "--int8"])]
    run = first["runs"][name]
    assert run["metrics"] == {"headline": 0.6} and run["metrics_before_weight_scale_fix"] == {"headline": 0.5}
    assert run["evaluated_with"]["int8_weight_bits"] == 7
    again = diagnostic.run_task("sst-2", SimpleNamespace(**{**vars(args), "max_new_runs": 0}), lambda row: None)
    assert again["runs"][name] == run and len(scored) == 1


def test_draws_run_the_shipped_config_per_batch_count_and_seed(diagnostic, trace_model, tmp_path, monkeypatch):
    """--draws: the shipped config with each QuantPost.batch_nums and Global.seed, and a table of the changes per
    batch count: each seed's, their mean and the worst."""
    from types import SimpleNamespace

    ran = []

    def run_variant(task, base, config, sets, save_dir, data):
        ran.append(sets)
        batches, seed = (int(s.split("=")[1]) for s in sets[-2:])
        metric = 0.80 - 0.01 * seed * (40 / batches)  # more batches, less spread over seeds
        return {"metrics": {"headline": metric}, "before": {"headline": 0.80}, "seconds": 100.0 + batches,
                "peak_rss_mb": 2048.0, "quant_post": {"batch_size": 8},
                "evaluated_with": {"precision": "int8", "int8_weight_bits": 7}}

    monkeypatch.setattr(diagnostic.reproduce, "prepare_base", lambda task, args: trace_model)
    monkeypatch.setattr(diagnostic, "run_variant", run_variant)
    os.makedirs(tmp_path / "sst-2")
    args = SimpleNamespace(work_dir=str(tmp_path), data_dir=None, max_new_runs=None, draws=True,
                           batch_nums=[40, 120], seeds=[0, 1, 2], set=[])
    row = diagnostic.run_task("sst-2", args, lambda row: None)
    assert list(row["runs"]) == [f"{n} calibration batches, seed {s}" for n in (40, 120) for s in (0, 1, 2)]
    assert ran[4] == diagnostic.CALIBRATION[diagnostic.SHIPPED] + ["QuantPost.batch_nums=120", "Global.seed=1"]
    text = diagnostic.render({"machine": {"cpu": "test cpu", "cores": 2, "isa": ["avx2"], "python": "3.11.7"},
                              "versions": {}, "command": "python benchmarks/ptq_diagnostic.py --draws", "tasks": [row]})
    assert "| task | calibration batches | seed 0 | seed 1 | seed 2 | mean | worst | wall s (mean) |" in text
    assert "| sst-2 acc (fp32 80.00) | 40 × 8 rows | +0.00 | -1.00 | -2.00 | -1.00 | -2.00 | 140 |" in text
    assert "| sst-2 acc (fp32 80.00) | 120 × 8 rows | +0.00 | -0.33 | -0.67 | -0.33 | -0.67 | 220 |" in text
    assert "| sst-2 acc (fp32 80.00) | 120 × 8 rows | +0.00 | -0.33 | -0.67 | -0.33 | -0.67 | 220 |" in \
        diagnostic.draws_summary({"tasks": [row]})  # the README's
    # --set: every draw with one more override, run apart from the shipped config's draws and named in the table
    ran.clear()
    args = SimpleNamespace(**{**vars(args), "batch_nums": [40], "set": ["QuantPost.smooth_alpha=1.0"]})
    other = diagnostic.run_task("sst-2", args, lambda row: None)
    assert list(other["runs"]) == [f"40 calibration batches, seed {s}, QuantPost.smooth_alpha=1.0" for s in (0, 1, 2)]
    assert ran[1] == diagnostic.CALIBRATION[diagnostic.SHIPPED] + ["QuantPost.smooth_alpha=1.0",
                                                                    "QuantPost.batch_nums=40", "Global.seed=1"]
    both = diagnostic.draws_table([{**row, "runs": {**row["runs"], **other["runs"]}}])
    assert "| sst-2 acc (fp32 80.00) | 40 × 8 rows, `QuantPost.smooth_alpha=1.0` | +0.00 | -1.00 | -2.00 |" in \
        "\n".join(both) and "| sst-2 acc (fp32 80.00) | 40 × 8 rows | +0.00 | -1.00 | -2.00 |" in "\n".join(both)


def test_padding_ranges_compare_real_tokens_with_every_position(diagnostic, trace_model, tmp_path):
    """--padding: each encoder input a linear layer reads, its range over real tokens against every position."""
    import paddle

    data_dir = write_sst2_fixture(tmp_path / "glue")
    config = tmp_path / "ptq.yaml"
    config.write_text(f"Global:\n  input_names: [input_ids, attention_mask, token_type_ids]\n  max_seq_length: {SEQ}\n"
                      "QuantPost:\n  batch_size: 4\n  batch_nums: 2\n")
    params = [n for n in load_model(os.path.join(trace_model, "model"))[2]
              if paddle.static.global_scope().find_var(n) is None]
    row = diagnostic.padding_ranges("sst-2", trace_model, str(config), data_dir)
    # the model's weights stay in a scope of its own (a later run.py in this process loads the same names)
    assert params and not [n for n in params if paddle.static.global_scope().find_var(n) is not None]
    assert row["batches"] == 2 and row["batch_size"] == 4 and 0 < row["mean_tokens"] < SEQ
    # per layer: q/k/v and FFN in read a LayerNorm output, attention output the context, FFN out the GELU;
    # the pooler's and classifier's inputs (one row per sentence) are left out
    kinds = [a["kind"] for a in row["activations"]]
    assert kinds == ["LayerNorm output", "attention context", "LayerNorm output", "GELU output"] * 2
    for a in row["activations"]:
        assert 0 < a["avg_real"] <= a["avg_all"] and 0 <= a["batches_set_by_padding"] <= 2
        assert (a["avg_real"] < a["avg_all"]) == (a["batches_set_by_padding"] > 0)
        assert 1.0 <= a["channel_ratio_median"] <= a["channel_ratio_max"]
    text = diagnostic.render({"machine": {"cpu": "test cpu", "cores": 2, "isa": ["avx2"], "python": "3.11.7"},
                              "versions": {}, "command": "python benchmarks/ptq_diagnostic.py --padding",
                              "tasks": [], "padding": [row]})
    assert "## sst-2: does padding set the ranges calibration reads?" in text
    assert text.count("| LayerNorm output (") == 4
    short = diagnostic.padding_summary({"padding": [row]})  # the README's: one line per task
    by_padding = sum(a["batches_set_by_padding"] for a in row["activations"])
    assert f"| sst-2 | {by_padding} of 16 | " in short
