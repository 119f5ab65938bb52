"""Tests for glue.py on tiny GLUE-layout fixtures written here; no network, no model."""

import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics  # imported before anything loads paddle

import cli
import glue

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", ".", "a", "he", "said"]
CAT_ID = VOCAB.index("cat")

MNLI_DEV_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                   "sentence1_parse", "sentence2_parse", "sentence1", "sentence2",
                   "label1", "label2", "label3", "label4", "label5", "gold_label"]
STSB_HEADER = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
               "sentence1", "sentence2", "score"]

# {relative path: (header or None, rows)}; texts use the vocab's words so predictions are known.
FIXTURES = {
    "CoLA/dev.tsv": (None, [
        ["gj04", "1", "", "the cat sat ."],
        ["gj04", "0", "*", "sat the the ."],
        ["gj04", "1", "", "the dog sat on the mat ."],
    ]),
    "SST-2/dev.tsv": (["sentence", "label"], [
        ["the cat sat ", "1"],
        ["the dog ", "0"],
        ["a cat on a mat ", "0"],
        ["the mat ", "0"],
        ["he said the cat ", "1"],
    ]),
    # The real MRPC header starts with a byte-order mark, and its text keeps bare quotes.
    "MRPC/dev.tsv": (["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"], [
        ["1", "1355540", "1355592", 'he said " the cat sat " .', "the cat sat ."],
        ["0", "2029631", "2029565", "the dog sat .", "a cat sat ."],
    ]),
    "STS-B/dev.tsv": (STSB_HEADER, [
        ["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none", "the cat sat .", "a cat sat .", "5.000"],
        ["1", "main-captions", "MSRvid", "2012test", "0002", "none", "none", "the dog .", "the mat .", "0.800"],
        ["2", "main-news", "MSRpar", "2012test", "0003", "none", "none", "he said .", "he sat .", "2.500"],
    ]),
    "QQP/dev.tsv": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], [
        ["0", "", "", "the cat ?", "a cat ?", "1"],
        ["1", "", "", "the dog ?", "the mat ?", "0"],
    ]),
    "MNLI/dev_matched.tsv": (MNLI_DEV_HEADER, [
        ["0", "63735", "63735n"] + [""] * 5 + ["the cat sat .", "a cat sat ."] + [""] * 5 + ["neutral"],
        ["1", "91383", "91383c"] + [""] * 5 + ["the dog sat .", "the cat sat ."] + [""] * 5 + ["contradiction"],
        ["2", "91384", "91384e"] + [""] * 5 + ["the cat sat .", "the cat ."] + [""] * 5 + ["entailment"],
    ]),
    # MNLI's train file has 12 columns (gold_label at 11), its dev files 16 (gold_label at 15).
    "MNLI/train.tsv": (MNLI_DEV_HEADER[:11] + ["gold_label"], [
        ["1541", "20033", "20033n", "slate"] + ["( x )"] * 4 + ["the cat .", "the dog .", "neutral", "neutral"],
    ]),
    "QNLI/dev.tsv": (["index", "question", "sentence", "label"], [
        ["0", "the cat ?", "the cat sat .", "entailment"],
        ["1", "the dog ?", "a mat .", "not_entailment"],
    ]),
    "RTE/dev.tsv": (["index", "sentence1", "sentence2", "label"], [
        ["0", "the cat sat on the mat .", "the cat sat .", "entailment"],
        ["1", "the dog sat .", "the cat sat .", "not_entailment"],
    ]),
}


def write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header else []) + rows
    path.write_text("\n".join("\t".join(row) for row in lines) + "\n", encoding="utf-8")


@pytest.fixture
def glue_dir(tmp_path):
    for relative, (header, rows) in FIXTURES.items():
        write_tsv(tmp_path / relative, header, rows)
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab_file=str(vocab))


def features_of(task, examples, tokenizer, max_seq_length=16):
    return glue.convert_examples(examples, tokenizer, max_seq_length, task)


# ----------------------------------------------------------------------------- task table


@pytest.mark.parametrize("name, expected", [
    ("sst-2", "sst-2"), ("sst2", "sst-2"), ("SST-2", "sst-2"), ("SST2", "sst-2"),
    ("sts-b", "sts-b"), ("stsb", "sts-b"), ("STS-B", "sts-b"),
    ("cola", "cola"), ("CoLA", "cola"), ("MNLI", "mnli"), (" rte ", "rte"),
])
def test_canonical_task_accepts_aliases(name, expected):
    assert glue.canonical_task(name) == expected


@pytest.mark.parametrize("name", ["wnli", "sst", "mnli-mm", ""])
def test_canonical_task_rejects_unknown_names(name):
    with pytest.raises(ValueError, match=r"unknown GLUE task .*allowed: cola, mnli, .*sst-2, sst2"):
        glue.canonical_task(name)


# (text_a[, text_b], label) indices PaddleNLP's glue reader takes from `line.strip().split('\t')` of a dev row
PADDLENLP_FIELDS = {"cola": (3, 1), "sst-2": (0, 1), "mrpc": (3, 4, 0), "sts-b": (7, 8, 9), "qqp": (3, 4, 5),
                    "mnli": (8, 9, 15), "qnli": (1, 2, 3), "rte": (1, 2, 3)}


def test_task_table():
    assert set(glue.TASK_ALIASES.values()) == set(glue.TASKS) == set(glue.TASK_NAMES)
    for name, spec in glue.TASKS.items():
        assert spec.name == name
        assert glue.canonical_task(spec.folder) == name  # the folder spelling works too
        assert len(PADDLENLP_FIELDS[name]) == len(spec.text_columns) + 1
    assert {n: t.num_labels for n, t in glue.TASKS.items()} == {
        "cola": 2, "sst-2": 2, "mrpc": 2, "sts-b": 1, "qqp": 2, "mnli": 3, "qnli": 2, "rte": 2}
    assert glue.TASKS["mnli"].dev_splits == ("dev_matched", "dev_mismatched")
    assert glue.TASKS["mnli"].labels == ("contradiction", "entailment", "neutral")
    assert {n: glue.headline_metric(n) for n in glue.TASK_NAMES} == {
        "cola": "mcc", "sst-2": "acc", "mrpc": "acc", "sts-b": "pearson",
        "qqp": "acc", "mnli": "acc", "qnli": "acc", "rte": "acc"}


# ----------------------------------------------------------------------------- reading


def test_read_split_examples(glue_dir):
    assert glue.read_split(glue_dir, "cola", "dev")[1] == {"text_a": "sat the the .", "label": 0}
    assert glue.read_split(glue_dir, "sst2", "dev")[0] == {"text_a": "the cat sat ", "label": 1}
    assert glue.read_split(glue_dir, "mrpc", "dev")[0] == {
        "text_a": 'he said " the cat sat " .', "text_b": "the cat sat .", "label": 1}
    stsb = glue.read_split(glue_dir, "stsb", "dev")
    assert [e["label"] for e in stsb] == [5.0, 0.8, 2.5] and isinstance(stsb[0]["label"], float)
    assert [e["label"] for e in glue.read_split(glue_dir, "mnli", "dev_matched")] == [2, 0, 1]
    assert glue.read_split(glue_dir, "mnli", "train") == [{"text_a": "the cat .", "text_b": "the dog .", "label": 2}]
    assert glue.read_split(glue_dir, "qqp", "dev")[1] == {"text_a": "the dog ?", "text_b": "the mat ?", "label": 0}
    assert [e["label"] for e in glue.read_split(glue_dir, "qnli", "dev")] == [0, 1]
    assert [e["label"] for e in glue.read_split(glue_dir, "rte", "dev")] == [0, 1]


@pytest.mark.parametrize("task", glue.TASK_NAMES)
def test_read_split_agrees_with_paddlenlp_column_indices(glue_dir, task):
    # PaddleNLP's glue reader: skip the header, line.strip().split('\t'), take fixed indices.
    spec = glue.TASKS[task]
    split = spec.dev_splits[0]
    lines = Path(glue.split_path(glue_dir, task, split)).read_text(encoding="utf-8").splitlines()
    rows = [line.strip().split("\t") for line in lines[1 if spec.has_header else 0:]]
    expected = [[row[i] for i in PADDLENLP_FIELDS[task]] for row in rows]
    examples = glue.read_split(glue_dir, task, split)
    assert [[e["text_a"], e["text_b"]] if "text_b" in e else [e["text_a"]] for e in examples] == [
        fields[:-1] for fields in expected]
    labels = [float(f[-1]) if spec.is_regression else spec.labels.index(f[-1]) for f in expected]
    assert [e["label"] for e in examples] == labels


def test_read_split_missing_file_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"looked for .*RTE/dev\.tsv.*--data_dir or the GLUE_DIR"):
        glue.read_split(tmp_path, "rte", "dev")


def test_read_split_rejects_bad_input(glue_dir):
    with pytest.raises(ValueError, match=r"unknown split 'test' .*allowed: train, dev"):
        glue.read_split(glue_dir, "rte", "test")
    write_tsv(glue_dir / "RTE" / "train.tsv", ["index", "sentence1", "sentence2", "label"],
              [["0", "a", "b", "entailment"], ["1", "a", "b", "maybe"]])
    with pytest.raises(ValueError, match=r"train\.tsv:3: unknown rte label 'maybe'; allowed: entailment, not_"):
        glue.read_split(glue_dir, "rte", "train")
    write_tsv(glue_dir / "QNLI" / "train.tsv", ["index", "question", "text", "label"], [["0", "a", "b", "entailment"]])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sentence'\]"):
        glue.read_split(glue_dir, "qnli", "train")
    write_tsv(glue_dir / "SST-2" / "train.tsv", ["sentence", "label"], [["a", "1"], ["no label"]])
    with pytest.raises(ValueError, match=r"train\.tsv:3: expected at least 2 tab-separated fields, got 1"):
        glue.read_split(glue_dir, "sst-2", "train")


def test_load_dev_splits_skips_missing_mnli_split_with_warning(glue_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="glue"):
        splits = glue.load_dev_splits("MNLI", glue_dir)
    assert list(splits) == ["dev_matched"] and len(splits["dev_matched"]) == 3
    assert "dev_mismatched.tsv: not found" in caplog.text


def test_load_dev_splits_without_any_dev_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dev_matched\.tsv, .*dev_mismatched\.tsv"):
        glue.load_dev_splits("mnli", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"CoLA/dev\.tsv"):
        glue.load_dev_splits("cola", tmp_path)


def test_load_split_uses_glue_dir_env(glue_dir, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    assert len(glue.load_split("rte", "dev")) == 2
    # An explicit data_dir wins over GLUE_DIR.
    with pytest.raises(FileNotFoundError):
        glue.load_split("rte", "dev", data_dir=str(glue_dir / "elsewhere"))


def test_load_split_maps_paddlenlp_examples(monkeypatch):
    # Stand-in for paddlenlp.datasets (no network here): same example keys as PaddleNLP's Glue builder.
    calls = []

    def load_dataset(name, config, splits):
        calls.append((name, config, splits))
        if config == "sts-b":
            return [{"sentence1": "a", "sentence2": "b", "labels": "3.800"}]
        return [{"sentence": "the cat", "labels": 1}]

    fake = types.ModuleType("paddlenlp.datasets")
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "paddlenlp.datasets", fake)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    assert glue.load_split("sst2", "dev") == [{"text_a": "the cat", "label": 1}]
    assert glue.load_split("stsb", "train") == [{"text_a": "a", "text_b": "b", "label": 3.8}]
    assert calls == [("glue", "sst-2", "dev"), ("glue", "sts-b", "train")]


# ----------------------------------------------------------------------------- tokenize + collate


def test_convert_example(tokenizer):
    single = glue.convert_example({"text_a": "the cat", "label": 1}, tokenizer, 16, "sst-2")
    assert single["input_ids"] == [2, 5, 6, 3]
    assert single["token_type_ids"] == [0, 0, 0, 0] and single["attention_mask"] == [1, 1, 1, 1]
    assert single["label"].dtype == np.int64
    pair = glue.convert_example({"text_a": "the cat", "text_b": "a dog", "label": 2.5}, tokenizer, 16, "sts-b")
    assert pair["input_ids"] == [2, 5, 6, 3, 12, 10, 3] and pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert pair["label"].dtype == np.float32
    long = glue.convert_example({"text_a": "the cat sat on the mat . " * 5}, tokenizer, 8, "sst-2")
    assert len(long["input_ids"]) == 8 and long["input_ids"][-1] == 3 and "label" not in long


def test_tokenized_on_read_is_convert_examples_row_by_row(tokenizer):
    examples = [{"text_a": "the cat", "label": 1}, {"text_a": "a dog sat", "label": 0}, {"text_a": "the mat", "label": 1}]
    lazy = glue.TokenizedOnRead(examples, tokenizer, 16, "sst-2")
    eager = glue.convert_examples(examples, tokenizer, 16, "sst-2")
    assert len(lazy) == 3 and list(lazy) == eager and lazy[1:] == eager[1:] and lazy[-1] == eager[-1]
    with pytest.raises(IndexError):
        lazy[3]


def test_convert_example_same_ids_with_paddlenlp_tokenizer(tokenizer, tmp_path):
    paddlenlp_transformers = pytest.importorskip("paddlenlp.transformers")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    paddle_tokenizer = paddlenlp_transformers.BertTokenizer(str(vocab))
    example = {"text_a": "the cat sat", "text_b": "on the mat", "label": 1}
    assert glue.convert_example(example, paddle_tokenizer, 16, "rte") == glue.convert_example(
        example, tokenizer, 16, "rte")


def make_features(lengths, labels=None):
    return [{"input_ids": [5] * n, "attention_mask": [1] * n, "token_type_ids": [1] * n,
             **({} if labels is None else {"label": labels[i]})} for i, n in enumerate(lengths)]


def test_collator_pads_to_max_length_under_feed_names():
    collate = glue.Collator(["x0", "x1", "x2"], pad_token_id=9, pad_token_type_id=3, max_seq_length=6)
    feeds, labels = collate(make_features([2, 4], labels=[np.int64(1), np.int64(0)]))
    assert list(feeds) == ["x0", "x1", "x2"]
    assert all(a.dtype == np.int64 and a.shape == (2, 6) for a in feeds.values())
    np.testing.assert_array_equal(feeds["x0"][0], [5, 5, 9, 9, 9, 9])  # input_ids: pad_token_id
    np.testing.assert_array_equal(feeds["x1"][0], [1, 1, 0, 0, 0, 0])  # attention_mask: 0
    np.testing.assert_array_equal(feeds["x2"][0], [1, 1, 3, 3, 3, 3])  # token_type_ids: pad_token_type_id
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0]
    assert collate.collate_feeds(make_features([1])).keys() == {"x0", "x1", "x2"}


def test_collator_longest_padding_and_label_dtypes():
    collate = glue.Collator(glue.INPUT_KEYS, pad_token_id=0, max_seq_length=6, padding="longest")
    feeds, labels = collate(make_features([2, 4], labels=[np.float32(0.5), np.float32(4.0)]))
    assert feeds["input_ids"].shape == (2, 4) and feeds["token_type_ids"][0].tolist() == [1, 1, 0, 0]
    assert labels.dtype == np.float32
    assert collate(make_features([3]))[1] is None  # unlabelled features


def test_collator_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"input_names must give 3 feed names, for input_ids, attention_mask, "):
        glue.Collator(["x0", "x1"], pad_token_id=0)
    with pytest.raises(ValueError, match=r"padding must be one of"):
        glue.Collator(glue.INPUT_KEYS, pad_token_id=0, padding="dynamic")
    with pytest.raises(ValueError, match=r"more than max_seq_length=4"):
        glue.Collator(glue.INPUT_KEYS, pad_token_id=0, max_seq_length=4)(make_features([5]))


def test_batches_keep_or_drop_the_partial_last_batch():
    features = make_features([1, 2, 3, 4, 5])
    collate = glue.Collator(glue.INPUT_KEYS, pad_token_id=0, max_seq_length=8)
    sizes = [len(feeds["input_ids"]) for feeds, _ in glue.batches(features, 2, collate)]
    assert sizes == [2, 2, 1]
    assert [len(f["input_ids"]) for f, _ in glue.batches(features, 2, collate, drop_last=True)] == [2, 2]

    def lengths(seed):
        return [n for f, _ in glue.batches(features, 2, collate, shuffle=True, seed=seed)
                for n in f["attention_mask"].sum(axis=1).tolist()]
    assert sorted(lengths(0)) == [1, 2, 3, 4, 5] and lengths(0) == lengths(0)
    with pytest.raises(ValueError, match="batch_size"):
        next(glue.batches(features, 0, collate))


def test_sample_is_seeded_and_keeps_order():
    items = list(range(100))
    picked = glue.sample(items, 10, seed=3)
    assert picked == glue.sample(items, 10, seed=3) != glue.sample(items, 10, seed=4)
    assert len(set(picked)) == 10 and picked == sorted(picked)
    assert glue.sample(items, None) == glue.sample(items, 1000) == items


def test_paddle_feed_loader_yields_feeds_only():
    pytest.importorskip("paddle")
    collate = glue.Collator(["x0", "x1", "x2"], pad_token_id=0, max_seq_length=8)
    loader = glue.paddle_feed_loader(make_features([1, 2, 3, 4, 5], labels=[np.int64(0)] * 5), 2, collate)
    batches = list(loader())
    assert len(loader) == len(batches) == 2  # drop_last
    assert all(set(b) == {"x0", "x1", "x2"} and list(b["x0"].shape) == [2, 8] for b in batches)


# ----------------------------------------------------------------------------- metrics


def test_compute_metrics_classification_match_sklearn():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert glue.compute_metrics("cola", preds, labels) == {
        "mcc": pytest.approx(sklearn.metrics.matthews_corrcoef(labels, preds))}
    assert glue.compute_metrics("qqp", preds, labels) == {
        "acc": pytest.approx(sklearn.metrics.accuracy_score(labels, preds)),
        "f1": pytest.approx(sklearn.metrics.f1_score(labels, preds))}
    labels3, preds3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert glue.compute_metrics("mnli", preds3, labels3)["acc"] == pytest.approx(np.mean(labels3 == preds3))
    # Constant predictions: MCC is 0 (not NaN), F1 of class 1 is 0.
    assert glue.compute_metrics("cola", np.zeros(4), [0, 1, 0, 1]) == {"mcc": 0.0}
    assert glue.compute_metrics("mrpc", [0, 0, 0, 0], [0, 1, 0, 1]) == {"acc": 0.5, "f1": 0.0}
    # By hand: tp=2, fp=1, fn=1, tn=1 -> acc 3/5, f1 2*2/(2*2+1+1), mcc (2*1-1*1)/sqrt(3*3*2*2)
    preds, labels = [1, 1, 1, 0, 0], [1, 1, 0, 1, 0]
    assert glue.compute_metrics("mrpc", preds, labels) == pytest.approx({"acc": 0.6, "f1": 4 / 6})
    assert glue.compute_metrics("cola", preds, labels)["mcc"] == pytest.approx(1 / 6)


def test_compute_metrics_stsb_pearson_spearman():
    rng = np.random.default_rng(1)
    labels = rng.uniform(0, 5, 100)
    preds = labels + rng.normal(0, 1, 100)

    def ranks(x):
        return np.argsort(np.argsort(x))  # no ties in continuous random data

    assert glue.compute_metrics("sts-b", preds, labels) == pytest.approx({
        "pearson": np.corrcoef(preds, labels)[0, 1],
        "spearman": np.corrcoef(ranks(preds), ranks(labels))[0, 1]})
    with pytest.raises(ValueError, match="as many predictions as labels"):
        glue.compute_metrics("sts-b", [1.0, 2.0], [1.0])


# ----------------------------------------------------------------------------- evaluation loop


def predict_cat_is_positive(feeds):
    """Fake model for classification: class 1 exactly when the token 'cat' is in the input."""
    has_cat = (feeds["x0"] == CAT_ID).any(axis=1)
    return np.stack([~has_cat, has_cat], axis=1).astype(np.float32)


def test_evaluate_single_split_keeps_last_partial_batch(glue_dir, tokenizer):
    features = features_of("sst-2", glue.read_split(glue_dir, "sst-2", "dev"), tokenizer)
    collate = glue.Collator(["x0", "x1", "x2"], tokenizer.pad_token_id, tokenizer.pad_token_type_id, 16)
    seen = []

    def predict(feeds):
        seen.append(feeds["x0"].shape)
        return predict_cat_is_positive(feeds)

    result = glue.evaluate(predict, {"dev": features}, "sst2", batch_size=2, collate=collate)
    # Predictions 1,0,1,0,1 against labels 1,0,0,0,1: 4 of 5 right.
    assert result == {"acc": pytest.approx(0.8), "headline": pytest.approx(0.8)}
    assert seen == [(2, 16), (2, 16), (1, 16)]


def test_evaluate_mnli_reports_each_split(glue_dir, tokenizer):
    header, rows = FIXTURES["MNLI/dev_matched.tsv"]
    write_tsv(glue_dir / "MNLI" / "dev_mismatched.tsv", header, rows[:2])
    dev = glue.load_dev_splits("mnli", glue_dir)
    features = {split: features_of("mnli", examples, tokenizer) for split, examples in dev.items()}
    collate = glue.Collator(glue.INPUT_KEYS, tokenizer.pad_token_id, tokenizer.pad_token_type_id, 16, "longest")

    def predict_neutral(feeds):
        return np.tile([0.0, 0.0, 1.0], (len(feeds["input_ids"]), 1))

    result = glue.evaluate(predict_neutral, features, "mnli", batch_size=2, collate=collate)
    assert result == pytest.approx({"dev_matched.acc": 1 / 3, "dev_mismatched.acc": 1 / 2, "headline": 1 / 3})


def test_evaluate_regression_and_cola(glue_dir, tokenizer):
    features = features_of("sts-b", glue.read_split(glue_dir, "sts-b", "dev"), tokenizer)
    collate = glue.Collator(glue.INPUT_KEYS, tokenizer.pad_token_id, tokenizer.pad_token_type_id, 16)

    def predict_length(feeds):  # score = number of real tokens, shape [batch, 1]
        return feeds["attention_mask"].sum(axis=1, keepdims=True).astype(np.float32)

    lengths = [len(f["input_ids"]) for f in features]
    result = glue.evaluate(predict_length, {"dev": features}, "stsb", batch_size=2, collate=collate)
    assert result["pearson"] == pytest.approx(np.corrcoef(lengths, [5.0, 0.8, 2.5])[0, 1])
    assert result["headline"] == result["pearson"] and "spearman" in result

    cola = features_of("cola", glue.read_split(glue_dir, "cola", "dev"), tokenizer)
    cola_collate = glue.Collator(["x0", "x1", "x2"], tokenizer.pad_token_id, tokenizer.pad_token_type_id, 16)
    # Predictions 1,0,0 against labels 1,0,1.
    assert glue.evaluate(predict_cat_is_positive, {"dev": cola}, "cola", 8, cola_collate) == pytest.approx(
        {"mcc": sklearn.metrics.matthews_corrcoef([1, 0, 1], [1, 0, 0]), "headline": 0.5})


def test_evaluate_rejects_logits_of_the_wrong_shape(glue_dir, tokenizer):
    features = features_of("rte", glue.read_split(glue_dir, "rte", "dev"), tokenizer)
    collate = glue.Collator(glue.INPUT_KEYS, tokenizer.pad_token_id, tokenizer.pad_token_type_id, 16)

    def predict_three_classes(feeds):
        return np.zeros((len(feeds["input_ids"]), 3))

    with pytest.raises(ValueError, match=r"returned shape \(2, 3\) for a batch of 2; rte expects \[2, 2\] logits"):
        glue.evaluate(predict_three_classes, {"dev": features}, "rte", 4, collate)


def test_setup_logging_keeps_file_handlers(tmp_path):
    """A driver's per-task log file survives the called scripts' own setup_logging()."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = logging.FileHandler(tmp_path / "task.log")
    try:
        root.addHandler(handler)
        cli.setup_logging()
        cli.setup_logging()
        logging.getLogger("some.script").info("step done")
        handler.flush()
        assert (tmp_path / "task.log").read_text().count("step done") == 1
        assert sum(type(h) is logging.StreamHandler for h in root.handlers) == 1
    finally:
        handler.close()
        root.handlers[:], root.level = saved
