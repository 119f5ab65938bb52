"""benchmarks/smooth_alpha.py: it scores training rows only, as infer.py deploys the model, and picks the
alpha whose error, relative to the first alpha's, has the lowest geometric mean over the tasks."""
import os

import numpy as np
import pytest

import glue
from conftest import SEQ, load_benchmark, write_sst2_fixture


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("smooth_alpha")


def results_of(errors):
    """results.json's tasks from {task: {alpha: rms error}}; each model's dev metric 0.6 + its error."""
    return {"command": "python benchmarks/smooth_alpha.py", "machine": {"cpu": "a CPU", "cores": 2, "isa": []},
            "versions": {},
            "tasks": [{"task": task, "metric": "acc", "rows": 512, "fp32_dev": 0.6, "runs": {f"smooth_alpha {a:g}": {
                "alpha": a, "rms_error": e, "flips": None if task == "sts-b" else 3, "dev": 0.6 + e}
                for a, e in by_alpha.items()}} for task, by_alpha in errors.items()]}


def test_scores_are_the_geometric_mean_of_each_tasks_error_over_the_first_alphas(bench):
    results = results_of({"rte": {0.75: 0.2, 0.9: 0.1}, "sts-b": {0.75: 0.1, 0.9: 0.4},
                          "mrpc": {0.75: 0.3}})  # mrpc has not run 0.9 yet: left out of the scores
    score = bench.scores(results)
    assert score == pytest.approx({0.75: 1.0, 0.9: np.sqrt(0.5 * 4)})
    report = bench.render(results)
    assert "| rte | 0.200 (3) | 0.100 (3) |" in report
    assert "| sts-b | 0.100 | 0.400 |" in report
    assert "| mrpc | 0.300 (3) | – |" in report
    assert "Closest to fp32 over the tasks that ran every alpha: alpha 0.75 (1.00 of alpha 0.75's error; the next, " \
           "alpha 0.9, 1.41)." in report
    assert "| rte acc (60.00) | +20.00 | +10.00 |" in report and "| mrpc acc (60.00) | +30.00 | – |" in report
    better = bench.scores(results_of({"rte": {0.75: 0.2, 0.9: 0.1}, "sts-b": {0.75: 0.1, 0.9: 0.08}}))
    assert min(better, key=better.get) == 0.9


def test_training_rows_are_scored_without_the_dev_split_or_labels(bench, trace_model, tmp_path, monkeypatch):
    data_dir = write_sst2_fixture(tmp_path / "glue", n_train=40)
    os.remove(os.path.join(data_dir, "SST-2", "dev.tsv"))  # the measurement must not need it
    monkeypatch.setattr(bench.reproduce, "SEQ", SEQ)  # the tiny model's traced length
    feeds = bench.training_feeds("sst-2", trace_model, data_dir)
    assert [len(f["input_ids"]) for f in feeds] == [40]  # every row (fewer than ROWS), in one batch of 64
    assert sorted(feeds[0]) == sorted(glue.INPUT_KEYS) and feeds[0]["input_ids"].shape == (40, SEQ)
    logits, precision = bench.logits(trace_model, feeds)
    assert precision == "fp32" and logits.shape == (40, 2)
