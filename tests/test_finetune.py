"""benchmarks/finetune.py on a tiny random BERT and tiny GLUE-layout fixtures (a few steps, CPU)."""
import json
import os

import numpy as np
import pytest

import cli  # before transformers/torch: it loads the system zlib
import glue
from conftest import load_benchmark, save_tiny_model


RESULT_KEYS = {
    "task", "source_model", "train_samples", "train_samples_available", "steps", "epochs", "learning_rate",
    "batch_size", "max_seq_length", "seed", "threads", "train_seconds", "eval_seconds", "dev_metrics", "versions",
}
MODEL_FILES = {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "finetune.json"}


@pytest.fixture(scope="module")
def finetune():
    return load_benchmark("finetune")


def sentence(rng):
    return " ".join(f"w{i}" for i in rng.integers(0, 94, size=rng.integers(2, 10)))


def write_tsv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join("\t".join(row) for row in [header] + rows) + "\n")


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("dev", 9)):
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"],
                  [[sentence(rng), str(i % 2)] for i in range(n)])
        write_tsv(root / "STS-B" / f"{split}.tsv", ["index", "sentence1", "sentence2", "score"],
                  [[str(i), sentence(rng), sentence(rng), f"{rng.uniform(0, 5):.3f}"] for i in range(n)])
    return str(root)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_bert"))


def args(tiny, glue_dir, output_dir, task="sst2", *extra):
    return ["--task_name", task, "--model_name_or_path", tiny, "--data_dir", glue_dir, "--save_dir",
            str(output_dir), "--max_seq_length", "16", "--batch_size", "4", "--max_steps", "3",
            "--cpu_threads", "1", *extra]


def dev_accuracy(model_dir, glue_dir):
    """Accuracy of the saved model on the dev fixture, computed here without glue.evaluate."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dev = glue.read_split(glue_dir, "sst-2", "dev")
    correct = 0
    with torch.no_grad():
        for ex in dev:  # one at a time: no padding involved
            enc = tokenizer(ex["text_a"], max_length=16, truncation=True, return_tensors="pt")
            correct += int(model(**enc).logits.argmax(-1).item() == ex["label"])
    return correct / len(dev)


def test_help(finetune, capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--help"])
    assert exit_info.value.code == 0
    assert "--max_train_samples" in capsys.readouterr().out


def test_sst2_writes_model_and_results(finetune, tiny, glue_dir, tmp_path, capsys):
    from transformers import AutoConfig

    out = tmp_path / "out"
    result = finetune.main(args(tiny, glue_dir, out, "SST2", "--max_train_samples", "10"))

    assert MODEL_FILES <= set(os.listdir(out))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".finetune-")], "temp folder left behind"
    with open(out / "finetune.json") as f:
        assert json.load(f) == result
    assert RESULT_KEYS <= set(result)
    assert result["task"] == "sst-2" and result["source_model"] == tiny
    assert (result["train_samples"], result["train_samples_available"]) == (10, 20)
    assert result["steps"] == 3 and result["epochs"] == pytest.approx(3 / 3)  # 10 samples / batch 4 = 3 steps
    assert set(result["dev_metrics"]) == {"acc", "headline"}
    assert set(result["versions"]) >= {"torch", "transformers"}
    # The saved model is the evaluated one: its accuracy, recomputed here, matches.
    assert result["dev_metrics"]["acc"] == pytest.approx(dev_accuracy(str(out), glue_dir), abs=1e-9)
    config = AutoConfig.from_pretrained(out)
    assert config.architectures == ["BertForSequenceClassification"] and config.num_labels == 2
    assert "fine-tuned sst-2" in capsys.readouterr().out

    # A non-empty output folder is refused, and replaced only with --overwrite.
    with pytest.raises(cli.InputError, match="not empty"):
        finetune.main(args(tiny, glue_dir, out))
    again = finetune.main(args(tiny, glue_dir, out, "sst-2", "--overwrite"))
    assert again["train_samples"] == 20


def test_stsb_regression_replaces_the_head(finetune, tiny, glue_dir, tmp_path):
    from transformers import AutoConfig

    result = finetune.main(args(tiny, glue_dir, tmp_path / "stsb", "stsb"))
    assert set(result["dev_metrics"]) == {"pearson", "spearman", "headline"}
    config = AutoConfig.from_pretrained(tmp_path / "stsb")
    assert config.num_labels == 1 and config.problem_type == "regression"


def test_needs_data_dir(finetune, tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    with pytest.raises(cli.InputError, match="GLUE_DIR"):
        finetune.main(["--task_name", "sst-2", "--model_name_or_path", tiny, "--save_dir", str(tmp_path / "o")])
