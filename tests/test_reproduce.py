"""benchmarks/reproduce.py's tables: averages and the metric goal line, from a results dict."""
import json
import os

import pytest

import cli  # noqa: F401  (loads the system zlib before anything imports paddle)
from conftest import SEQ, load_benchmark


@pytest.fixture(scope="module")
def reproduce():
    return load_benchmark("reproduce")


def task_row(task, base, ptq, qat, ms):
    def model(metric, p50):
        return {"metrics": {"headline": metric}, "perf": {"32": {"p50_ms": p50, "p50_ms_rounds": [p50] * 3}}}

    return {"task": task, "metric": "acc", "pytorch": {"headline": base}, "seconds": {"finetune": 60.0},
            "finetune": {"train_samples": 800, "train_samples_available": 2490},
            "models": {"base": model(base, ms), "prune_ptq": model(ptq, ms / 4), "distill_qat": model(qat, ms / 2)}}


def step(result):
    """One finished step as reproduce.Steps records it."""
    return {"result": result, "seconds": 1.0}


def results_of(*rows):
    return {"machine": {"cpu": "test cpu", "cores": 2, "isa": ["avx2"], "python": "3.11"}, "versions": {"paddlepaddle": "2.6.2"},
            "command": "python benchmarks/reproduce.py", "stages": ["finetune"],
            "settings": {"compression_eval_samples": {"qqp": 1000, "mnli": 1000}}, "tasks": list(rows)}


def test_render_averages_and_goal(reproduce):
    results = results_of(task_row("sst-2", 0.80, 0.79, 0.81, 400.0), task_row("rte", 0.60, 0.60, 0.58, 100.0))
    text = reproduce.render(results)
    assert "| sst-2 | acc | 800 of 2490 | 80.00 | 80.00 | 79.00 | 81.00 |" in text
    # averages: base 70.00, PTQ (79 + 60) / 2 = 69.50, QAT (81 + 58) / 2 = 69.50
    assert "| average | | | 70.00 | 70.00 | 69.50 | 69.50 |" in text
    assert "SOURCES.md" not in text and "eval_samples" not in text  # no partial task, no sampled compression
    # PTQ: -1.00 and 0.00, average -0.50; QAT: +1.00 and -2.00, average -0.50: both miss the 0.3 average
    assert "- prune + distill, then PTQ: average -0.50 points, worst sst-2 -1.00: accuracy not met; slowest " \
           "batch-32 speed-up 4.00×: speed met" in text
    assert "- distill + QAT: average -0.50 points, worst rte -2.00: accuracy not met; slowest batch-32 speed-up " \
           "2.00×: speed not met" in text
    results["tasks"][0]["models"]["prune_ptq"]["metrics"]["headline"] = 0.796  # -0.40 and 0.00: average -0.20
    assert "- prune + distill, then PTQ: average -0.20 points, worst sst-2 -0.40: accuracy met;" \
        in reproduce.render(results)
    assert "| sst-2 | 32 | 400.0 (1.00×) | 100.0 (4.00×) | 200.0 (2.00×) |" in text
    assert "## Latency" in text and "| task | finetune |" in text
    results["stages"] += ["perf_base_b32"]  # an accuracy-only run: no latency table, no stage none of its tasks ran
    for row in results["tasks"]:
        for model in row["models"].values():
            model["perf"] = {}
    text = reproduce.render(results)
    assert "## Latency" not in text and "speed-up not measured: speed not met" in text
    assert "| task | finetune |" in text and "perf_base_b32" not in text


def test_headline_names_the_training_only_where_a_strategy_trains(reproduce):
    """The README's short table, for the full run and for a PTQ-only run rendered from another folder."""
    results = results_of(task_row("sst-2", 0.80, 0.79, 0.81, 400.0), task_row("rte", 0.60, 0.60, 0.58, 100.0))
    results["settings"].update(train_iter=60, strategies={k: reproduce.STRATEGIES[k] for k in ("prune_ptq", "distill_qat")})
    text = reproduce.headline(results)
    assert text.startswith("MiniLM fine-tuned on 2 GLUE tasks (sst-2, rte), each strategy trained 60 steps; test cpu "
                           "(avx2), 2 cores;")
    results["settings"]["prune_train_iter"] = 120  # the pruned model's distillation trains longer
    assert reproduce.headline(results).startswith(
        "MiniLM fine-tuned on 2 GLUE tasks (sst-2, rte), trained prune + distill, then PTQ 120 steps, distill + QAT 60 "
        "steps; test cpu (avx2), 2 cores;")
    assert reproduce.training(results["settings"]).startswith(
        "training steps: prune + distill, then PTQ 120, distill + QAT 60; overrides: prune_ptq as shipped; "
        "distill_qat `TrainConfig.learning_rate=1.0e-5`")
    older = {**results, "settings": {**results["settings"], "prune_train_iter": None}}  # a run before the flag
    results["tasks"][1]["run"] = reproduce.run_of(older)
    assert reproduce.headline(results).startswith(
        "MiniLM fine-tuned on 2 GLUE tasks (sst-2, rte), trained prune + distill, then PTQ 60 or 120 steps, distill + "
        "QAT 60 steps; rows from 2 runs (settings per row in RESULTS.md); test cpu (avx2), 2 cores;")
    del results["settings"]["prune_train_iter"], results["tasks"][1]["run"]
    assert "| prune + distill, then PTQ (2 tasks) | 70.00 → 69.50 (-0.50) | sst-2 -1.00 | 4.00× | not measured |" in text
    assert "[benchmarks/reproduce/RESULTS.md](benchmarks/reproduce/RESULTS.md)" in text
    results["tasks"][1]["seconds"]["compress_ptq"] = 7080.0  # 60 + 60 + 7080 s: 2.0 hours
    assert "(2.0 hours of wall time in all, fine-tuning included)" in reproduce.headline(results)
    row = task_row("sts-b", 0.80, 0.79, 0.81, 400.0)
    row["models"] = {"base": row["models"]["base"], "ptq": {**row["models"]["prune_ptq"], "peak_rss_mb": 2048.0,
                                                            "peak_rss_own": True}}
    text = reproduce.headline(results_of(row), folder="reproduce/avx2")
    assert text.startswith("MiniLM fine-tuned on 1 GLUE task (sts-b), test cpu (avx2), 2 cores;")
    assert "| PTQ (1 task) | 80.00 → 79.00 (-1.00) | sts-b -1.00 | 4.00× | 2.0 GiB at most |" in text
    assert "†" not in text
    del row["models"]["ptq"]["peak_rss_own"]  # measured before run_script read the script's own peak: an upper bound
    text = reproduce.headline(results_of(row), folder="reproduce/avx2")
    assert "| 2.0 GiB at most † |" in text and "† measured before benchmarks/common.py" in text
    assert "| sts-b | 2.0 † |" in reproduce.render(results_of(row))
    assert "[benchmarks/reproduce/avx2/RESULTS.md](benchmarks/reproduce/avx2/RESULTS.md)" in text


def test_render_judges_openvino_where_measured(reproduce):
    """Each compressed model is also scored as OpenVINO deploys it, with its own goal lines."""
    results = results_of(task_row("sst-2", 0.80, 0.79, 0.81, 400.0))
    assert "OpenVINO" not in reproduce.render(results)
    for key, metric in (("prune_ptq", 0.799), ("distill_qat", 0.78)):
        results["tasks"][0]["models"][key]["metrics_openvino"] = {"headline": metric}
    text = reproduce.render(results)
    table = text.split("## Dev metric as OpenVINO deploys")[1]
    assert "| sst-2 | acc | 800 of 2490 | 80.00 | 80.00 | 79.90 | 78.00 |" in table
    assert "- prune + distill, then PTQ: average -0.10 points, worst sst-2 -0.10: accuracy met;" in table
    assert "- prune + distill, then PTQ: average -1.00 points" in text.split("## Dev metric as OpenVINO")[0]
    assert "(7-bit weights on a CPU without VNNI or AMX" in table
    results["machine"]["isa"] += ["avx512f", "avx512_vnni"]
    assert "(8-bit weights: this CPU has VNNI or AMX)" in reproduce.render(results)


def test_render_scores_the_peer_beside_the_strategies(reproduce):
    """The peer's own PTQ (OpenVINO + NNCF) gets a dev column and an accuracy-only goal line, no latency cell."""
    results = results_of(task_row("sst-2", 0.80, 0.79, 0.81, 400.0), task_row("rte", 0.60, 0.60, 0.58, 100.0))
    for row, metric in zip(results["tasks"], (0.802, 0.59)):
        row["models"]["peer_nncf"] = {"metrics": {"headline": metric}, "perf": {}}
    text = reproduce.render(results)
    assert "| task | metric | train rows used | PyTorch | base (fp32) | prune + distill, then PTQ | distill + QAT | " \
           "OpenVINO + NNCF PTQ (peer) |" in text
    assert "| sst-2 | acc | 800 of 2490 | 80.00 | 80.00 | 79.00 | 81.00 | 80.20 |" in text
    # +0.20 and -1.00: average -0.40, worst rte
    assert "- OpenVINO + NNCF PTQ (peer): average -0.40 points, worst rte -1.00: accuracy not met\n" in text
    assert "| sst-2 | 32 | 400.0 (1.00×) | 100.0 (4.00×) | 200.0 (2.00×) |\n" in text  # no peer latency column
    assert "300 training sentences" in text
    results["settings"]["train_iter"] = 60
    assert "| OpenVINO + NNCF PTQ (peer) (2 tasks) | 70.00 → 69.60 (-0.40) | rte -1.00 | " \
           "[benchmarks/latency](benchmarks/latency/RESULTS.md) | – |" in reproduce.headline(results)


def test_changed_rows_counts_each_way_with_the_sign_test(reproduce, tmp_path):
    """Rows the compressed model flipped against the base, from infer.py's predictions.json, and the exact sign test."""
    labels = [1, 0, 1, 1, 0, 0, 1, 0]
    base = [1, 0, 1, 1, 0, 1, 0, 0]  # rows 5 and 6 wrong
    model = [1, 1, 0, 1, 0, 0, 0, 1]  # 1, 2 and 7 turn wrong, 5 turns right, 6 stays wrong (same class)
    for name, preds in (("base", base), ("model", model)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"dev": {"prediction": preds, "label": labels}}))
    changed = reproduce.changed_rows(str(tmp_path / "base.json"), str(tmp_path / "model.json"))
    # 4 changed rows split 3 / 1: P(X <= 1) = (1 + 4) / 16, two-sided 10 / 16
    assert changed == {"rows": 8, "to_wrong": 3, "to_right": 1, "p": 0.625}
    assert reproduce.changed_rows(str(tmp_path / "base.json"), str(tmp_path / "model.json"), indices=True) == {
        **changed, "wrong_rows": [1, 2, 7], "right_rows": [5]}
    assert reproduce.sign_test(5, 1) == pytest.approx(14 / 64) and reproduce.sign_test(4, 0) == 0.125
    assert reproduce.sign_test(0, 0) == 1.0 and reproduce.sign_test(2, 2) == 1.0
    assert reproduce.changed_rows(str(tmp_path / "base.json"), str(tmp_path / "missing.json")) is None
    (tmp_path / "score.json").write_text(json.dumps({"dev": {"prediction": [0.5, 4.0], "label": [1.0, 3.5]}}))
    assert reproduce.changed_rows(str(tmp_path / "score.json"), str(tmp_path / "score.json")) is None  # STS-B

    results = results_of(task_row("rte", 0.60, 0.60, 0.58, 100.0), task_row("sts-b", 0.80, 0.79, 0.81, 400.0))
    results["tasks"][0]["models"]["prune_ptq"]["changed"] = changed
    text = reproduce.render(results)
    table = text.split("## Dev rows")[1].split("##")[0]
    assert "| rte | 8 | 3 ✗, 1 ✓ (p 0.62) | – |" in table and "| sts-b |" not in table
    assert "## Dev rows" not in reproduce.render(results_of(task_row("rte", 0.60, 0.60, 0.58, 100.0)))


def test_render_shows_ptq_per_calibration_draw(reproduce):
    results = results_of(task_row("rte", 0.60, 0.60, 0.58, 100.0), task_row("sst-2", 0.80, 0.79, 0.81, 400.0))
    results["tasks"][0]["models"]["ptq"] = {"metrics": {"headline": 0.59}, "perf": {}, "metrics_by_seed": {
        "0": {"headline": 0.59}, "1": {"headline": 0.605}, "2": {"headline": 0.60}}}
    text = reproduce.render(results)
    assert "| task | base | seed 0 | seed 1 | seed 2 | range |" in text
    assert "| rte | 60.00 | -1.00 | +0.50 | +0.00 | 1.50 |" in text and "| sst-2 | 80.00 |" not in text
    assert "per calibration draw" not in reproduce.render(results_of(task_row("rte", 0.60, 0.60, 0.58, 100.0)))


def test_task_table_shows_each_change_with_its_rows_speed_draws_and_run(reproduce):
    """The README's table per task: change in points, rows turned wrong and right (* beyond chance), batch-32
    speed-up; PTQ's other draws; the run each row came from where there are several."""
    results = results_of(task_row("sts-b", 0.80, 0.8, 0.803, 400.0), task_row("rte", 0.60, 0.61, 0.58, 100.0))
    rte = results["tasks"][1]["models"]
    rte["prune_ptq"]["changed"] = {"rows": 277, "to_wrong": 2, "to_right": 5, "p": 0.45}
    rte["distill_qat"]["changed"] = {"rows": 277, "to_wrong": 12, "to_right": 2, "p": 0.013}
    results["settings"].update(train_iter=60, prune_train_iter=120,
                               strategies={k: reproduce.STRATEGIES[k] for k in ("prune_ptq", "distill_qat")})
    text = reproduce.task_table(results)
    assert text.startswith("| task | base | prune + distill, then PTQ | distill + QAT |\n|---|---|---|---|\n")
    assert "| sts-b (acc) | 80.00 | 0.00, 4.00× | +0.30, 2.00× |" in text  # 0.00 unsigned
    assert "| rte (acc) | 60.00 | +1.00 (2 ✗ 5 ✓), 4.00× | -2.00 (12 ✗ 2 ✓*), 2.00× |" in text
    assert "* beyond chance by a sign test (p < 0.05); STS-B, a regression, has no rows to count;" in text
    assert "draws" not in text and "Runs:" not in text
    rte["ptq"] = {"metrics": {"headline": 0.59}, "perf": {}, "metrics_by_seed": {
        "0": {"headline": 0.59}, "2": {"headline": 0.60}, "1": {"headline": 0.605}}}
    settings = {"train_iter": 60, "strategies": {"ptq": {}}}
    results["tasks"][0]["run"] = reproduce.run_of({**results, "settings": settings})
    text = reproduce.task_table(results)
    assert "| distill + QAT | PTQ | PTQ, other draws | run |" in text
    assert "| sts-b (acc) | 80.00 | 0.00, 4.00× | +0.30, 2.00× | – | – | 1 |" in text
    assert "| rte (acc) | 60.00 | +1.00 (2 ✗ 5 ✓), 4.00× | -2.00 (12 ✗ 2 ✓*), 2.00× | -1.00 | +0.50 / 0.00 | 2 |" in text
    assert text.rstrip().endswith(  # with the overrides not every run made
        "Runs: 1: test cpu, PTQ alone; 2: test cpu, prune + distill, then PTQ 120 steps, distill + QAT 60 steps, "
        "distill + QAT `TrainConfig.learning_rate=1.0e-5`.")


def test_an_override_the_configs_hold_now_is_not_told_apart_from_a_later_run(reproduce):
    """A run's override that today's shipped configs hold (QuantAware.skip_attention=true moved into them) is
    marked "(shipped now)" in the run's description and left out of the legend that tells the runs apart; an
    override the configs do not hold (another value, or not in every task's config) is listed."""
    results = results_of(task_row("sts-b", 0.80, 0.8, 0.803, 400.0), task_row("rte", 0.60, 0.61, 0.58, 100.0))

    def run(*sets):
        return reproduce.run_of({**results, "settings": {"train_iter": 60, "prune_train_iter": 120, "strategies": {
            "prune_ptq": {"set": []}, "distill_qat": {"set": list(sets)}}}})

    shipped, other = "QuantAware.skip_attention=true", "QuantAware.smooth_alpha=1.0"
    results["tasks"][0]["run"], results["tasks"][1]["run"] = run(shipped), run(other)
    assert reproduce.shipped_now("distill_qat", shipped, ["sts-b", "rte"])
    assert not reproduce.shipped_now("distill_qat", "QuantAware.skip_attention=false", ["sts-b"])
    assert not reproduce.shipped_now("ptq", shipped, ["sts-b"])  # PTQ's config has no QuantAware section
    assert not reproduce.shipped_now("distill_qat", shipped, [])
    assert reproduce.task_table(results).rstrip().endswith(
        "Runs: 1: test cpu, prune + distill, then PTQ 120 steps, distill + QAT 60 steps; 2: test cpu, prune + "
        "distill, then PTQ 120 steps, distill + QAT 60 steps, distill + QAT `QuantAware.smooth_alpha=1.0`.")
    text = reproduce.render(results)
    assert "- sts-b: test cpu (avx2), 2 cores; training steps: prune + distill, then PTQ 120, distill + QAT 60; " \
           "overrides: prune_ptq as shipped; distill_qat `QuantAware.skip_attention=true` (shipped now);" in text
    assert "- rte: test cpu (avx2), 2 cores; training steps: prune + distill, then PTQ 120, distill + QAT 60; " \
           "overrides: prune_ptq as shipped; distill_qat `QuantAware.smooth_alpha=1.0`;" in text


def test_readme_tables_are_the_rendered_results():
    """Every results block of README.md is what benchmarks/render_readme.py renders from its results.json now:
    no number in them was typed or left behind."""
    import re

    from conftest import ROOT

    render_readme = load_benchmark("render_readme")
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    blocks = re.findall(r"<!-- results:(\S+) -->\n(.*?)\n<!-- /results:\1 -->", readme, re.S)
    assert {name for name, _ in blocks} >= {"reproduce", "reproduce#tasks", "latency"}
    for name, text in blocks:
        assert text == render_readme.block(name), f"README block {name}: run benchmarks/render_readme.py"


def test_summarize_collects_the_ptq_seeds_and_the_peer(reproduce, tmp_path):
    """A task's steps.json as run_task leaves it -> its row: PTQ per seed (seed 0 is the PTQ run), the peer."""
    done = {"finetune": step({"dev_metrics": {"headline": 0.6}}), "eval_converted": step({"headline": 0.6}),
            "infer_base": step({"headline": 0.6}), "infer_ptq": step({"headline": 0.59}),
            "compress_ptq": step({"strategies": ["quant_post"], "metrics_after": {"headline": 0.59},
                                  "compress_seconds": 30.0}),
            "compress_ptq_seed1": step({"metrics_after": {"headline": 0.61}}), "infer_ptq_seed1": step({"headline": 0.61}),
            "peer_nncf": step({"headline": 0.595}),
            "latency": step({"base": {"32": {"p50_ms": 300.0}}, "ptq": {"32": {"p50_ms": 120.0}}})}
    row = reproduce.summarize("rte", done, str(tmp_path))
    assert row["models"]["ptq"]["perf"] == {"32": {"p50_ms": 120.0}}
    assert row["models"]["ptq"]["metrics_by_seed"] == {"0": {"headline": 0.59}, "1": {"headline": 0.61}}
    assert row["models"]["peer_nncf"] == {"metrics": {"headline": 0.595}, "perf": {}}
    assert row["models"]["ptq"]["changed"] is None  # no predictions.json in tmp_path
    assert set(row["models"]) == {"base", "ptq", "peer_nncf"}


def test_render_names_partial_train_files_and_sampled_compressions(reproduce):
    text = reproduce.render(results_of(task_row("sst-2", 0.80, 0.79, 0.81, 400.0),
                                       task_row("qqp", 0.80, 0.79, 0.81, 400.0)))
    assert "Train files here that are subsets of GLUE's: QQP (see" in text
    assert "The compressions of qqp (1000 rows) evaluated a seeded dev sample" in text


def test_render_says_when_mnli_has_only_dev_matched(reproduce):
    row = task_row("mnli", 0.70, 0.69, 0.70, 400.0)
    text = reproduce.render(results_of(row))
    assert "MNLI is scored on dev_matched only" in text
    row["models"]["base"]["metrics"] = {"dev_matched.acc": 0.70, "dev_mismatched.acc": 0.71, "headline": 0.70}
    assert "dev_matched only" not in reproduce.render(results_of(row))


def test_render_says_which_run_py_times_predate_the_mkl_fix(reproduce):
    old, new = task_row("rte", 0.55, 0.55, 0.55, 400.0), task_row("mnli", 0.60, 0.60, 0.60, 400.0)
    for key in ("prune_ptq", "distill_qat"):
        new["models"][key]["mkl_avx2_on_amd"] = True
    assert ("with MKL's AVX2 kernels (`workarounds.mkl_avx2_on_amd`) for mnli; its times for rte predate that fix."
            in reproduce.render(results_of(old, new)))
    for key in ("prune_ptq", "distill_qat"):
        old["models"][key]["mkl_avx2_on_amd"] = False  # measured after the fix, on a CPU it leaves alone
    for row in (old, new):  # the peer's NNCF model is not run.py's: it has no such flag
        row["models"][reproduce.PEER] = {"metrics": {"acc": 0.55, "headline": 0.55}, "perf": {}}
    assert "mkl_avx2_on_amd" not in reproduce.render(results_of(old, new))


def test_render_marks_the_stages_timed_beside_another_job(reproduce):
    row = task_row("qqp", 0.80, 0.79, 0.81, 400.0)
    assert "‡" not in reproduce.render(results_of(row))
    row["shared_cpu"] = ["finetune"]
    text = reproduce.render(results_of(row))
    assert "| qqp | 60‡ |" in text and "‡ timed while another job shared the CPU" in text


def test_a_rerun_keeps_the_shared_cpu_mark_only_on_the_steps_it_did_not_rerun(reproduce):
    old = {**task_row("qqp", 0.80, 0.79, 0.81, 400.0), "shared_cpu": ["finetune", "compress_ptq"]}
    old["seconds"]["compress_ptq"] = 30.0
    new = task_row("qqp", 0.80, 0.79, 0.81, 400.0)
    new["seconds"]["compress_ptq"] = 31.0  # compress_ptq reran
    rows = reproduce.merge_rows({"tasks": [old]}, [new], {"command": "again"})
    assert [(row["shared_cpu"], row["run"]["command"]) for row in rows] == [(["finetune"], "again")]
    new["seconds"]["finetune"] += 1
    assert "shared_cpu" not in reproduce.merge_rows({"tasks": [old]}, [new], {})[0]


def test_strategy_config_keeps_the_headline_search_unless_dropped(reproduce, tmp_path):
    import yaml

    path, sets = reproduce.strategy_config("sst-2", "prune_ptq", str(tmp_path), 120)
    with open(path) as f:
        assert "HyperParameterOptimization" in yaml.safe_load(f)
    assert "TrainConfig.train_iter=120" in sets and "TrainConfig.eval_iter=60" in sets
    path, _ = reproduce.strategy_config("sst-2", "prune_ptq", str(tmp_path), 120, drop=["HyperParameterOptimization"])
    with open(path) as f:
        config = yaml.safe_load(f)
    assert "HyperParameterOptimization" not in config and config["QuantPost"]["algo"] == "avg"


def test_train_iter_table(reproduce):
    train_iter = load_benchmark("train_iter")

    def run(key, steps, metric, **fields):
        return {"strategy": key, "train_iter": steps, "metrics": {"headline": metric}, "before": {"headline": 0.80},
                "compress_seconds": 100.0 * steps, **fields}

    shipped = train_iter.qat_variants("sst-2")["distill_qat"]
    # configs/sst-2.yaml's QuantAware: the reproduction overrides none of it
    assert shipped == {"smooth_alpha": 0.75, "skip_head": False, "use_pact": True, "skip_attention": True}
    fast = ["TrainConfig.train_iter=40", "TrainConfig.learning_rate=1e-4"]
    text = train_iter.render({**results_of(), "task": "sst-2", "metric": "acc",
                              "runs": {"prune_ptq_40_lr0.0001": run("prune_ptq", 40, 0.785, sets=fast),
                                       "prune_ptq_40": run("prune_ptq", 40, 0.78),
                                       "distill_qat_40": run("distill_qat", 40, 0.79, quant_aware=shipped),
                                       "prune_ptq_120": run("prune_ptq", 120, 0.805)}})
    # a column per strategy and learning rate (without an override: the shipped config's, 2e-5 and 1e-6 here)
    assert ("| train_iter | prune + distill, then PTQ, lr 2e-05 | prune + distill, then PTQ, lr 0.0001 | "
            "distill + QAT, lr 1e-06 |") in text
    assert "| 40 | 78.00 (-2.00), 4000 s | 78.50 (-1.50), 4000 s | 79.00 (-1.00), 4000 s |" in text
    assert "| 120 | 80.50 (+0.50), 12000 s | – | – |" in text
    # against the converted model's whole-dev metric where recorded (run.py's "before" may score a sample)
    text = train_iter.render({**results_of(), "task": "qnli", "metric": "acc", "base_metrics": {"headline": 0.79},
                              "runs": {"prune_ptq_120": run("prune_ptq", 120, 0.805)}})
    assert "| 120 | 80.50 (+1.50), 12000 s |" in text
    assert "Machine: test cpu" in text
    # each run in the column of the QuantAware values it ran with, whatever it was named; runs from before
    # those were recorded ran the document's QuantAware (pooler and classifier fp32 where skip_head is true)
    text = train_iter.render({**results_of(), "task": "sst-2", "metric": "acc", "runs": {
        "distill_qat_40": run("distill_qat", 40, 0.79),
        "distill_qat_60": run("distill_qat", 60, 0.77, skip_head=True),
        "distill_qat_no_pact_120": run("distill_qat_no_pact", 120, 0.78,
                                       quant_aware={**shipped, "smooth_alpha": None, "use_pact": False})}})
    assert ("| train_iter | distill + QAT, not smoothed (the document's QuantAware), lr 1e-06 | distill + QAT, "
            "not smoothed, pooler + classifier fp32, lr 1e-06 | distill + QAT, not smoothed, no PACT, lr 1e-06 |") in text
    assert "| 40 | 79.00 (-1.00), 4000 s | – | – |" in text and "| 60 | – | 77.00 (-3.00), 6000 s | – |" in text
    assert "| 120 | – | – | 78.00 (-2.00), 12000 s |" in text
    # the README's short table: a row per column and step count, in STRATEGIES' order
    assert train_iter.summary({"task": "sts-b", "metric": "pearson", "runs": {
        "b": run("distill_qat_unsmoothed", 60, 0.79), "a": run("distill_qat", 60, 0.805, quant_aware=shipped)}}) == (
        "| sts-b, deployed with `--int8` | train_iter | pearson (fp32 80.00) |\n|---|---|---|\n"
        "| distill + QAT, lr 1e-06 | 60 | 80.50 (+0.50) |\n"
        "| distill + QAT, not smoothed (the document's QuantAware), lr 1e-06 | 60 | 79.00 (-1.00) |")


def test_train_iter_prune_fp32_runs_pruning_alone_and_infers_without_int8(reproduce, tmp_path, monkeypatch):
    import yaml

    train_iter = load_benchmark("train_iter")
    calls = {}

    def compress(config, base, out, extra):
        with open(config) as f:
            calls["sections"] = set(yaml.safe_load(f))
        calls["sets"] = extra[1::2]
        return {"metrics_before": {"headline": 0.8}, "strategies": ["transformer_prune_dis"],
                "compress_seconds": 1.0, "peak_rss_mb": 1.0}

    def run_infer(task, model_dir, infer_args, save_dir):
        calls.setdefault("infer", []).append(infer_args)
        return {"metrics": {"headline": 0.79}}

    monkeypatch.setattr(train_iter.reproduce, "compress", compress)
    monkeypatch.setattr(train_iter.common, "run_infer", run_infer)
    train_iter.run_one("sst-2", "prune_fp32", 60, "base", str(tmp_path), [])
    assert {"TransformerPrune", "Distillation", "TrainConfig"} <= calls["sections"]
    assert not calls["sections"] & {"QuantPost", "HyperParameterOptimization"}
    train_iter.run_one("sst-2", "prune_ptq", 60, "base", str(tmp_path), [], lr=2e-5)
    assert "QuantPost" in calls["sections"] and "HyperParameterOptimization" not in calls["sections"]
    assert ["--int8" in a for a in calls["infer"]] == [False, True]
    # --learning_rates: the override in place of the reproduction's, in the run's name and its --set list
    assert os.path.isdir(tmp_path / "train_iter" / "prune_ptq_60_lr2e-05")
    lr_sets = [s for s in calls["sets"] if s.startswith("TrainConfig.learning_rate=")]
    assert lr_sets == ["TrainConfig.learning_rate=2.0e-05"]  # 2e-05 would be text to run.py's YAML
    assert train_iter.run_name("distill_qat", 60) == "distill_qat_60_lr1e-05"  # the reproduction's override


def test_train_iter_seeds_draw_other_batches_and_count_the_rows_each_changed(reproduce, tmp_path, monkeypatch):
    train_iter = load_benchmark("train_iter")
    sets = []

    def compress(config, base, out, extra):
        sets.append(extra[1::2])
        return {"metrics_before": {"headline": 0.5}, "strategies": ["qat_dis"], "compress_seconds": 1.0,
                "peak_rss_mb": 1.0, "config": {"QuantAware": {}}}

    def predictions(folder, prediction):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "predictions.json"), "w") as f:
            json.dump({"dev": {"prediction": prediction, "label": [1, 0, 0, 1]}}, f)

    def run_infer(task, model_dir, infer_args, save_dir):  # the fp32 model: right, right, wrong, wrong
        predictions(save_dir, [1, 0, 1, 0] if save_dir.endswith("base") else [1, 1, 0, 0])
        return {"metrics": {"headline": 0.5}}

    def prepare_base(task, args):
        os.makedirs(tmp_path / task, exist_ok=True)
        (tmp_path / task / "steps.json").write_text(json.dumps({"eval_converted": step({"headline": 0.5})}))
        return "base"

    monkeypatch.setattr(train_iter.reproduce, "compress", compress)
    monkeypatch.setattr(train_iter.reproduce, "prepare_base", prepare_base)
    monkeypatch.setattr(train_iter.common, "run_infer", run_infer)
    measured = {}
    monkeypatch.setattr(train_iter.common, "benchmark_main", lambda args, script, argv, measure, render: measure(
        measured, lambda: None))
    train_iter.main(["--task", "rte", "--train_iters", "60", "--strategies", "distill_qat", "--seeds", "2",
                     "--work_dir", str(tmp_path)])
    result = measured["runs"]["distill_qat_60_lr1e-05_seed2"]
    assert os.path.isdir(tmp_path / "rte" / "train_iter" / "distill_qat_60_lr1e-05_seed2")
    assert [s for s in sets[0] if s.startswith("Global.seed")] == ["Global.seed=2"]
    # against the fp32 model's predictions: row 1 turned wrong, row 2 right
    assert result["changed"] == {"rows": 4, "to_wrong": 1, "to_right": 1, "p": 1.0, "wrong_rows": [1],
                                 "right_rows": [2]}
    os.remove(tmp_path / "rte" / "train_iter" / "base" / "predictions.json")
    train_iter.main(["--task", "rte", "--train_iters", "60", "--strategies", "distill_qat", "--seeds", "2",
                     "--work_dir", str(tmp_path)])
    assert len(sets) == 1 and measured["runs"]["distill_qat_60_lr1e-05_seed2"]["changed"] is None  # kept, not known

    def run(seed, metric, to_wrong, to_right):
        return {"strategy": "distill_qat", "train_iter": 60, "metrics": {"headline": metric},
                "before": {"headline": 0.60}, "compress_seconds": 900.0, "sets": result["sets"][:-1] + [
                    f"Global.seed={seed}"], "quant_aware": train_iter.qat_variants("rte")["distill_qat"],
                "changed": {"rows": 277, "to_wrong": len(to_wrong), "to_right": len(to_right), "p": 0.5,
                            "wrong_rows": to_wrong, "right_rows": to_right}}

    # rows 7 and 9 change in two seeds of three (7 was right in fp32, 9 wrong), 1 and 2 in one each
    runs = {"task": "rte", "metric": "acc", "runs": {"s1": run(1, 0.61, [], [9]), "s0": run(0, 0.58, [7, 1], [9]),
                                                    "s2": run(2, 0.60, [7], [2])}}
    text = train_iter.render({**results_of(), **runs})
    assert ("| train_iter | distill + QAT, lr 1e-05, seed 0 | distill + QAT, lr 1e-05, seed 1 | "
            "distill + QAT, lr 1e-05, seed 2 |") in text
    assert "| 60 | 58.00 (-2.00; 2 ✗ 1 ✓), 900 s | 61.00 (+1.00; 0 ✗ 1 ✓), 900 s | 60.00 (+0.00; 1 ✗ 1 ✓), 900 s |" in text
    mean = ("- distill + QAT, lr 1e-05, 60 steps, over 3 seeds: mean change -0.33, from -2.00 to +1.00; dev rows "
            "changed: 2.0 per seed on average, 4 in some seed; the 2 that changed in most seeds: 1 right in fp32, "
            "1 wrong")
    assert text.count(mean) == 1
    # the README's short table: a row per seed, then their mean
    assert train_iter.summary(runs).splitlines()[2:] == [
        "| distill + QAT, lr 1e-05, seed 0 | 60 | 58.00 (-2.00; 2 ✗ 1 ✓) |",
        "| distill + QAT, lr 1e-05, seed 1 | 60 | 61.00 (+1.00; 0 ✗ 1 ✓) |",
        "| distill + QAT, lr 1e-05, seed 2 | 60 | 60.00 (+0.00; 1 ✗ 1 ✓) |", "", mean]
    del runs["runs"]["s2"]["changed"]["wrong_rows"]  # a run from before the rows were kept: counts only
    assert train_iter.summary(runs).endswith("from -2.00 to +1.00; dev rows changed: 2.0 per seed on average")
    runs["runs"]["s0_120"] = {**run(0, 0.59, [], []), "train_iter": 120}  # after every seed at 60 steps
    assert [line.split(" | ")[:2] for line in train_iter.summary(runs).splitlines()[2:6]] == [
        ["| distill + QAT, lr 1e-05, seed 0", "60"], ["| distill + QAT, lr 1e-05, seed 1", "60"],
        ["| distill + QAT, lr 1e-05, seed 2", "60"], ["| distill + QAT, lr 1e-05, seed 0", "120"]]


def test_train_iter_runs_again_on_another_base(reproduce, tmp_path, monkeypatch):
    """A finished train_iter run is kept while the base model it compressed stays the same, not after the task's
    fine-tuning changed."""
    train_iter = load_benchmark("train_iter")
    ran = []

    def prepare_base(task, args):
        os.makedirs(tmp_path / task, exist_ok=True)
        (tmp_path / task / "steps.json").write_text(json.dumps({"eval_converted": step({"headline": 0.8})}))
        return "base"

    monkeypatch.setattr(train_iter.reproduce, "prepare_base", prepare_base)
    monkeypatch.setattr(train_iter, "run_one", lambda *a: ran.append(a[1:3]) or {"metrics": {"headline": 0.79}})
    monkeypatch.setattr(train_iter.common, "run_infer", lambda *a: ran.append("fp32") or {"metrics": {"headline": 0.8}})
    monkeypatch.setattr(train_iter.common, "benchmark_main", lambda args, script, argv, measure, render: measure(
        {}, lambda: None))
    argv = ["--task", "rte", "--train_iters", "60", "--strategies", "prune_fp32", "--work_dir", str(tmp_path)]
    train_iter.main(argv)
    train_iter.main(argv)
    assert ran == ["fp32", ("prune_fp32", 60)]  # the fp32 model's predictions too, once per base
    monkeypatch.setitem(train_iter.reproduce.FINETUNE, "rte", ["--epochs", "9"])
    train_iter.main(argv)
    assert ran == ["fp32", ("prune_fp32", 60)] * 2


@pytest.mark.parametrize("script", ["reproduce.py", "ptq_diagnostic.py", "train_iter.py", "finetune.py",
                                    "render_readme.py", "convert/bench_convert.py", "latency/bench_latency.py",
                                    "latency/peer.py"])
def test_benchmark_help(script):
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("value", ["qat:QuantAware.smooth_alpha=0.9", "ptq:smooth_alpha=0.9", "ptq:QuantPost.algo"])
def test_set_names_a_strategy_and_a_section_key(reproduce, capsys, value):
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--set", value])
    assert "give STRATEGY:SECTION.KEY=VALUE, STRATEGY one of prune_ptq, distill_qat, ptq" in capsys.readouterr().err


def test_task_flag_keeps_the_helpful_message(reproduce, capsys):
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--tasks", "wnli"])
    assert "unknown GLUE task 'wnli'; allowed: cola, mnli" in capsys.readouterr().err


def test_results_name_no_path_of_this_machine(tmp_path):
    common = load_benchmark("common")
    data = str(tmp_path / "glue")
    results = {"command": f"python benchmarks/reproduce.py --data_dir {data} --tasks sst-2",
               "model": os.path.join(common.ROOT, "benchmarks", "cache", "m"), "rows": [os.path.join(data, "SST-2")]}
    assert common.portable(results, data) == {"command": "python benchmarks/reproduce.py --data_dir $GLUE_DIR --tasks sst-2",
                                              "model": "benchmarks/cache/m", "rows": ["$GLUE_DIR/SST-2"]}


def test_report_names_no_path_of_this_machine(tmp_path):
    """RESULTS.md, rendered right after a measurement, is as portable as results.json."""
    from types import SimpleNamespace

    common = load_benchmark("common")
    data = str(tmp_path / "glue")
    args = SimpleNamespace(render_only=False, save_dir=str(tmp_path / "out"), data_dir=data)

    def measure(results, save):
        results["rows"] = [os.path.join(data, "SST-2")]
        save()

    common.benchmark_main(args, "benchmarks/x.py", ["--data_dir", data], measure, lambda r: r["command"] + r["rows"][0])
    report = (tmp_path / "out" / "RESULTS.md").read_text()
    assert report == "python benchmarks/x.py --data_dir $GLUE_DIR$GLUE_DIR/SST-2"


def test_a_run_keeps_the_rows_of_the_tasks_it_did_not_run(reproduce, tmp_path, monkeypatch):
    """Two runs of a few tasks each, on two machines, make one table; each row names the run it came from."""
    def steps(ptq):  # a task's steps.json as run_task leaves it
        return {"finetune": step({"dev_metrics": {"headline": 0.6}, "train_samples": 90, "train_samples_available": 90}),
                "eval_converted": step({"headline": 0.6}), "infer_base": step({"headline": 0.6}),
                "compress_ptq": step({"strategies": ["quant_post"], "metrics_after": {"headline": ptq},
                                      "compress_seconds": 30.0}), "infer_ptq": step({"headline": ptq}),
                "latency": step({})}

    save = str(tmp_path / "out")
    argv = ["--strategies", "ptq", "--ptq_seeds", "--save_dir", save, "--work_dir", str(tmp_path / "work"), "--tasks"]
    monkeypatch.setattr(reproduce, "run_task", lambda task, args: steps(0.59))
    monkeypatch.setattr(reproduce.common, "machine", lambda: {"cpu": "first cpu", "cores": 2, "isa": ["avx2"]})
    reproduce.main(argv + ["rte", "mrpc"])
    monkeypatch.setattr(reproduce, "run_task", lambda task, args: steps(0.61))
    monkeypatch.setattr(reproduce.common, "machine", lambda: {"cpu": "second cpu", "cores": 2, "isa": ["avx512_vnni"]})
    results = reproduce.main(argv + ["mrpc", "cola"])
    with open(os.path.join(save, "results.json")) as f:
        assert json.load(f)["tasks"] == results["tasks"]
    assert [(row["task"], row["models"]["ptq"]["metrics"]["headline"], row["run"]["machine"]["cpu"])
            for row in results["tasks"]] == [("rte", 0.59, "first cpu"), ("mrpc", 0.61, "second cpu"),
                                             ("cola", 0.61, "second cpu")]
    with open(os.path.join(save, "RESULTS.md")) as f:
        text = f.read()
    assert "The rows come from 2 runs" in text
    assert "- rte: first cpu (avx2), 2 cores; overrides: ptq as shipped;" in text
    assert "- mrpc, cola: second cpu (avx512_vnni), 2 cores;" in text and "--tasks mrpc cola`" in text
    assert "| average | | | 60.00 | 60.00 | 60.33 |" in text
    assert "rows from 2 runs (settings per row in RESULTS.md); first cpu (avx2), 2 cores and second cpu " \
           "(avx512_vnni), 2 cores;" in reproduce.headline(results)
    text = reproduce.render({**results, "tasks": results["tasks"][1:]})  # one run: its command and settings above
    assert "rows come from" not in text and "Each strategy: overrides: ptq as shipped." in text


def test_a_step_runs_again_when_what_it_depends_on_changed(reproduce, tmp_path, monkeypatch):
    """A rerun skips the steps done with the same inputs and runs again the ones whose inputs changed, and every
    step after them (another train_iter: that strategy's compression and its scoring, not the fine-tuning);
    a strategy left out, or a step recorded before inputs were (no "inputs"), is not reported from the old run."""
    from types import SimpleNamespace

    calls = []

    def prepare_base(task, args):  # the fine-tuning steps as prepare_base records them, each run once
        steps = reproduce.Steps(os.path.join(args.work_dir, task, "steps.json"))
        for name in ("finetune", "convert", "eval_converted"):
            steps.run(name, lambda: calls.append(name) or {"dev_metrics": {"headline": 0.6}},
                      reproduce.base_inputs(task))
        return "base"

    def run_infer(task, path, flags, save_dir):
        calls.append(("infer", os.path.basename(path), "--perf" in flags))
        return {"metrics": {"headline": 0.6}, "p50_ms": 1.0}

    def compress(config, base, out, extra):
        calls.append(("compress", os.path.basename(out), [a for a in extra if a.startswith("TrainConfig.train_iter")]))
        return {"run": len(calls)}

    monkeypatch.setattr(reproduce, "prepare_base", prepare_base)
    monkeypatch.setattr(reproduce, "compress", compress)
    monkeypatch.setattr(reproduce.common, "run_infer", run_infer)
    monkeypatch.setattr(reproduce.common, "run_peer", lambda *a, **k: calls.append("peer") or {"metrics": {}})
    os.makedirs(tmp_path / "rte")
    args = SimpleNamespace(work_dir=str(tmp_path), data_dir=None, strategies=["ptq", "prune_ptq"], train_iter=60,
                           batch_sizes=[32], perf_steps=[5], perf_rounds=1, ptq_seeds=[],
                           set={"ptq": [], "prune_ptq": [], "distill_qat": []})

    first = reproduce.run_task("rte", args)
    assert calls[:3] == ["finetune", "convert", "eval_converted"] and "peer" in calls
    assert [c[1:] for c in calls if c[0] == "compress"] == [("ptq", []), ("prune_ptq", ["TrainConfig.train_iter=60"])]
    assert len(calls) == 3 + 2 + 1 + 2 + 2 + 3 + 1  # base: dev metric; each strategy: dev metric, OpenVINO; perf x 3
    assert [c for c in calls if c[0] == "infer" and c[2]] == [("infer", "base", True), ("infer", "ptq", True),
                                                             ("infer", "prune_ptq", True)]  # one latency window
    calls.clear()
    assert reproduce.run_task("rte", args) == first and calls == []  # nothing changed: nothing runs

    again = reproduce.run_task("rte", SimpleNamespace(**{**vars(args), "strategies": ["prune_ptq"], "train_iter": 120}))
    assert calls == [("compress", "prune_ptq", ["TrainConfig.train_iter=120"]), ("infer", "prune_ptq", False),
                     ("infer", "prune_ptq", False),  # dev metric, OpenVINO; the window again, the base timed beside it
                     ("infer", "base", True), ("infer", "prune_ptq", True)]
    assert "compress_ptq" not in again and again["compress_prune_ptq"]["result"] != first["compress_prune_ptq"]["result"]
    assert again["compress_prune_ptq"]["inputs"]["sets"][-2:] == ["TrainConfig.train_iter=120", "TrainConfig.eval_iter=60"]

    calls.clear()
    path = tmp_path / "rte" / "steps.json"
    recorded = json.loads(path.read_text())
    del recorded["infer_prune_ptq"]["inputs"]  # as a steps.json from before inputs were recorded
    path.write_text(json.dumps(recorded))
    reproduce.run_task("rte", SimpleNamespace(**{**vars(args), "strategies": ["prune_ptq"], "train_iter": 120}))
    assert calls == [("infer", "prune_ptq", False)]
    calls.clear()  # --prune_train_iter 120 (QAT's 60): the pruned model trained 120 steps is the one found
    reproduce.run_task("rte", SimpleNamespace(**{**vars(args), "strategies": ["prune_ptq"], "prune_train_iter": 120}))
    assert calls == []
    # --set ptq:...: that strategy's compression runs again with the override last, and its scoring
    extra = reproduce.parse_args(["--set", "ptq:QuantPost.smooth_alpha=0.9"]).set
    assert extra == {"ptq": ["QuantPost.smooth_alpha=0.9"], "prune_ptq": [], "distill_qat": []}
    again = reproduce.run_task("rte", SimpleNamespace(**{**vars(args), "strategies": ["ptq"], "set": extra}))
    assert calls[:2] == [("compress", "ptq", []), ("infer", "ptq", False)]
    assert again["compress_ptq"]["inputs"]["sets"][-1] == "QuantPost.smooth_alpha=0.9"


def test_latency_window_times_the_models_in_turn_and_keeps_the_median_round(reproduce, monkeypatch):
    """Each round times every model once per batch size, starting one model later than the round before; a
    model's result is its round with the median p50, and every round's p50 is kept, in order. The rendered
    table marks a row timed before the window."""
    from types import SimpleNamespace

    calls, p50s = [], {"base": iter([300.0, 360.0, 310.0]), "ptq": iter([150.0, 120.0, 130.0])}

    def run_infer(task, path, flags, save_dir):
        calls.append(path)
        return {"p50_ms": next(p50s[path]), "batch_size": int(flags[flags.index("--batch_size") + 1])}

    monkeypatch.setattr(reproduce.common, "run_infer", run_infer)
    args = SimpleNamespace(batch_sizes=[32], perf_steps=[5], perf_rounds=3)
    window = reproduce.latency_window("rte", {"base": ("base", [], "d0"), "ptq": ("ptq", ["--int8"], "d1")}, [],
                                      args, "infer")
    assert calls == ["base", "ptq", "ptq", "base", "base", "ptq"]
    assert window == {"base": {"32": {"p50_ms": 310.0, "batch_size": 32, "p50_ms_rounds": [300.0, 360.0, 310.0]}},
                      "ptq": {"32": {"p50_ms": 130.0, "batch_size": 32, "p50_ms_rounds": [150.0, 120.0, 130.0]}}}

    windowed, apart = task_row("rte", 0.6, 0.6, 0.6, 400.0), task_row("mrpc", 0.6, 0.6, 0.6, 400.0)
    for model in apart["models"].values():  # as rows measured before the window
        del model["perf"]["32"]["p50_ms_rounds"]
    text = reproduce.render(results_of(windowed, apart))
    assert "| rte | 32 |" in text and "| mrpc § | 32 |" in text
    assert "one window: 3 rounds" in text and "§ mrpc: each model timed when its step ran" in text


def test_run_script_measures_the_scripts_own_peak_memory(tmp_path):
    """A script's peak resident memory is its own, not that of the benchmark that started it (a child exec'd
    straight from a process keeps that process's high-water mark in its ru_maxrss)."""
    import numpy as np

    common = load_benchmark("common")
    script = tmp_path / "script.py"
    script.write_text("import json, os, sys\nimport numpy as np\n"
                      "block = np.ones(200 * 2 ** 20 // 8)  # 200 MB, touched\n"
                      "save_dir = sys.argv[sys.argv.index('--save_dir') + 1]\nos.makedirs(save_dir)\n"
                      "json.dump({'ok': True}, open(os.path.join(save_dir, 'results.json'), 'w'))\n")
    parent = np.ones(1024 * 2 ** 20 // 8)  # this process peaks above 1 GB first
    result, seconds, peak_mb = common.run_script([str(script), "--save_dir", str(tmp_path / "out")],
                                                 str(tmp_path / "log"))
    assert result == {"ok": True} and seconds > 0 and parent[-1] == 1.0
    assert 200 < peak_mb < 600, peak_mb
    script.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match="exit 3"):
        common.run_script([str(script), "--save_dir", str(tmp_path / "out2")], str(tmp_path / "log2"))


def test_a_compression_whose_config_changed_in_form_only_is_kept(reproduce, trace_model, tmp_path):
    """An override moved into the config file: the compression done before ran the very config run.py would run
    now, so it and the steps that read its model are kept (recorded under the new inputs); another value, or
    another base model, runs again."""
    import yaml

    import run

    shipped = yaml.safe_load(open(os.path.join(reproduce.ROOT, "configs", "sst-2_ptq.yaml")))
    shipped["Global"]["max_seq_length"] = SEQ  # the tiny model's traced length

    def config_file(name, **quant_post):
        path = tmp_path / name
        path.write_text(yaml.safe_dump({**shipped, "QuantPost": {**shipped["QuantPost"], **quant_post}}))
        return str(path)

    old_sets = ["Global.batch_size=32", "QuantPost.algo=abs_max"]
    old = {"model": "base-digest", "config": reproduce.config_digest(config_file("old.yaml")), "sets": old_sets}
    steps = reproduce.Steps(str(tmp_path / "steps.json"))
    gcfg, sections = run.load_config(str(tmp_path / "old.yaml"), model_dir=trace_model, data_dir=str(tmp_path),
                                     overrides=old_sets)
    steps.done = {"compress_ptq": {**step({"config": json.loads(json.dumps({"Global": gcfg, **sections}))}),
                                   "inputs": old},
                  "infer_ptq": {**step({}), "inputs": {"model": reproduce.digest(old)}},
                  "latency": {**step({}), "inputs": {"models": {"base": "b", "ptq": reproduce.digest(old)}}}}
    before = json.loads(json.dumps(steps.done))

    def kept(config, sets, model="base-digest"):
        inputs = {"model": model, "config": reproduce.config_digest(config), "sets": sets}
        reproduce.keep_same_compression(steps, "compress_ptq", inputs, config, sets, trace_model, str(tmp_path))
        return steps.is_done("compress_ptq", inputs), inputs

    assert kept(config_file("other.yaml", algo="hist"), ["Global.batch_size=32"])[0] is False
    assert kept(config_file("moved.yaml", algo="abs_max"), ["Global.batch_size=32"], model="another")[0] is False
    assert steps.done == before  # neither touched the record
    done, new = kept(config_file("moved.yaml", algo="abs_max"), ["Global.batch_size=32"])
    assert done and steps.is_done("infer_ptq", {"model": reproduce.digest(new)})
    assert steps.done["latency"]["inputs"] == {"models": {"base": "b", "ptq": reproduce.digest(new)}}
    assert reproduce.Steps(str(tmp_path / "steps.json")).done == steps.done  # written to steps.json
