"""GLUE tasks, data, tokenize + collate, metrics and the one evaluation loop.

Shared by run.py (compression with PaddleSlim AutoCompression, and --eval) and
infer.py (Paddle Inference accuracy mode); every caller passes only its predict function:

    task = glue.canonical_task("SST2")                          # -> 'sst-2'
    dev = glue.load_dev_splits(task, data_dir="glue_data")     # {'dev': [{'text_a': ..., 'label': 1}, ...]}
    features = {s: glue.convert_examples(ex, tokenizer, 128, task) for s, ex in dev.items()}
    collate = glue.Collator(["input_ids", "attention_mask", "token_type_ids"],
                            tokenizer.pad_token_id, tokenizer.pad_token_type_id, max_seq_length=128)
    print(glue.evaluate(predict_fn, features, task, batch_size=32, collate=collate))

Examples are dicts {'text_a': str, 'text_b': str (pair tasks only), 'label': int | float};
the label is the index into Task.labels, or the float score for STS-B.
"""

import cli  # noqa: F401  (first: loads the system zlib before anything loads paddle)
import csv
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from cli import InputError, take_signals

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- task table


@dataclass(frozen=True)
class Task:
    """One GLUE task: everything the scripts need to read, score and report it.

    Attributes:
        name: canonical (PaddleNLP) task name, e.g. 'sst-2'.
        folder: GLUE folder under the data dir, e.g. 'SST-2'.
        text_columns: TSV column(s) giving text_a and, for pair tasks, text_b.
        label_column: TSV column holding the gold label.
        labels: label strings as written in the TSV, in PaddleNLP's order (the order
            defines the class index, which must match the model's logits); None for
            the STS-B regression.
        metrics: metric names reported by compute_metrics; the first one is the
            headline number (what PaddleSlim's example returned as `res[0]`).
        dev_splits: evaluation splits (MNLI has two).
        has_header: False for CoLA, whose train/dev files have no header row.
        columns: column names of a headerless file, so it is read by name like the others.
    """

    name: str
    folder: str
    text_columns: tuple
    label_column: str = "label"
    labels: tuple = ("0", "1")
    metrics: tuple = ("acc",)
    dev_splits: tuple = ("dev",)
    has_header: bool = True
    columns: tuple = None

    @property
    def is_regression(self):
        return self.labels is None

    @property
    def num_labels(self):
        return 1 if self.is_regression else len(self.labels)

    @property
    def headline_metric(self):
        return self.metrics[0]

    @property
    def splits(self):
        """Splits read_split accepts (GLUE test files carry no labels, so no 'test')."""
        return ("train",) + self.dev_splits


# Edit here to use your own dataset: add a Task row (and an alias below) for a folder
# laid out like GLUE, <data_dir>/<folder>/{train,dev}.tsv.
TASKS = {
    t.name: t
    for t in (
        Task("cola", "CoLA", ("sentence",), metrics=("mcc",),
             has_header=False, columns=("source", "label", "marker", "sentence")),
        Task("sst-2", "SST-2", ("sentence",)),
        Task("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", metrics=("acc", "f1")),
        Task("sts-b", "STS-B", ("sentence1", "sentence2"), "score", labels=None, metrics=("pearson", "spearman")),
        Task("qqp", "QQP", ("question1", "question2"), "is_duplicate", metrics=("acc", "f1")),
        Task("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("contradiction", "entailment", "neutral"),
             dev_splits=("dev_matched", "dev_mismatched")),
        Task("qnli", "QNLI", ("question", "sentence"), labels=("entailment", "not_entailment")),
        Task("rte", "RTE", ("sentence1", "sentence2"), labels=("entailment", "not_entailment")),
    )
}
TASK_NAMES = tuple(TASKS)  # for argparse choices= and help texts

# PaddleNLP spellings and HF `datasets` spellings; canonical_task lower-cases first,
# so 'CoLA', 'SST-2' and 'STS-B' (the folder names) are accepted too.
TASK_ALIASES = {
    "cola": "cola",
    "sst-2": "sst-2",
    "sst2": "sst-2",
    "mrpc": "mrpc",
    "sts-b": "sts-b",
    "stsb": "sts-b",
    "qqp": "qqp",
    "mnli": "mnli",
    "qnli": "qnli",
    "rte": "rte",
}


def canonical_task(name):
    """Map any accepted spelling of a task name to its canonical (PaddleNLP) name.

    Args:
        name: e.g. 'SST-2', 'sst2', 'stsb', 'CoLA'.

    Returns:
        The key into TASKS, e.g. 'sst-2'. (For argparse's `type=`, use task_arg.)

    Raises:
        ValueError: the name is not a known task; the message lists the allowed names.
    """
    canonical = TASK_ALIASES.get(str(name).strip().lower())
    if canonical is None:
        raise InputError(f"unknown GLUE task {name!r}; allowed: {', '.join(sorted(TASK_ALIASES))} (any case)")
    return canonical


def task_arg(name):
    """argparse `type=` for a task name: canonical_task, its message kept (argparse shows only
    "invalid ... value" for a ValueError)."""
    import argparse

    try:
        return canonical_task(name)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def get_task(name):
    """Return the Task row for any accepted spelling of a task name (see canonical_task)."""
    return TASKS[canonical_task(name)]


def headline_metric(task):
    """Name of the single number AutoCompression's eval callback returns for `task`.

    CoLA: 'mcc'; STS-B: 'pearson'; every other task: 'acc' (MRPC and QQP also report
    'f1', but, as in PaddleSlim's example, accuracy is the one the compressor compares).
    """
    return get_task(task).headline_metric


# What PaddleNLP's AutoTokenizer and HF need next to a model; convert.py writes them, run.py
# carries them over to the compressed model (tokenizer.json too, when there is one).
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json")


# ----------------------------------------------------------------------------- reading data


def resolve_data_dir(data_dir=None):
    """The local GLUE folder to read: `data_dir` if given, else $GLUE_DIR, else None (download)."""
    return data_dir or os.environ.get("GLUE_DIR") or None


def split_path(data_dir, task, split):
    """Path of one split's TSV file in GLUE layout: <data_dir>/<folder>/<split>.tsv."""
    return os.path.join(data_dir, get_task(task).folder, f"{split}.tsv")


def _not_found_message(task, paths):
    spec = get_task(task)
    return (
        f"GLUE {spec.name} data not found: looked for {', '.join(paths)}. Pass a folder in GLUE TSV layout "
        f"(<dir>/{spec.folder}/<split>.tsv) with --data_dir or the GLUE_DIR environment variable, "
        f"or set neither to let PaddleNLP download it (needs internet)."
    )


def _make_example(texts, label):
    example = {"text_a": texts[0]}
    if len(texts) > 1:
        example["text_b"] = texts[1]
    example["label"] = label
    return example


def _parse_label(spec, value, where):
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise InputError(f"{where}: {spec.label_column} {value!r} is not a finite number")
        return score
    if value not in spec.labels:
        raise InputError(f"{where}: unknown {spec.name} label {value!r}; allowed: {', '.join(spec.labels)}")
    return spec.labels.index(value)


def read_split(data_dir, task, split):
    """Read one split of a task from a local folder in GLUE TSV layout.

    Columns are looked up by name in the header (CoLA, which has none, by Task.columns),
    so MNLI's 12-column train and 16-column dev files read the same way.

    Args:
        data_dir: folder holding <folder>/<split>.tsv, e.g. the unpacked glue_data.
        task: task name, any accepted spelling.
        split: 'train' or one of the task's dev splits.

    Returns:
        A list of examples {'text_a', ['text_b'], 'label'}; label is the class index
        (int) or, for STS-B, the score (float).

    Raises:
        FileNotFoundError: the file does not exist (the message says where it looked).
        ValueError: unknown split, missing column, short row or unknown label (with file:line).
    """
    spec = get_task(task)
    if split not in spec.splits:
        raise InputError(f"unknown split {split!r} for GLUE {spec.name}; allowed: {', '.join(spec.splits)}")
    path = split_path(data_dir, spec.name, split)
    if not os.path.isfile(path):
        raise FileNotFoundError(_not_found_message(spec.name, [path]))
    wanted = spec.text_columns + (spec.label_column,)
    examples = []
    # utf-8-sig: MRPC's header starts with a byte-order mark. QUOTE_NONE: GLUE text keeps
    # its quote characters (e.g. MRPC's `" The foodservice ...`), so quotes are plain text.
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(rows, []) if spec.has_header else list(spec.columns)
            missing = [c for c in wanted if c not in header]
            if missing:
                raise InputError(f"{path}: missing column(s) {missing}; header has {header}")
            indices = [header.index(c) for c in wanted]
            for row in rows:
                if not row:  # blank line
                    continue
                where = f"{path}:{rows.line_num}"
                if len(row) <= max(indices):
                    raise InputError(f"{where}: expected at least {max(indices) + 1} tab-separated fields, "
                                     f"got {len(row)}")
                texts = [row[i] for i in indices[:-1]]
                examples.append(_make_example(texts, _parse_label(spec, row[indices[-1]], where)))
        except UnicodeDecodeError:
            raise InputError(f"{path}:{_first_non_utf8_line(path)}: not UTF-8 text; save the file as UTF-8") from None
    return examples


def _first_non_utf8_line(path):
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _download_split(spec, split):
    """Load one split through PaddleNLP's GLUE builder (downloads on first use)."""
    try:
        from paddlenlp.datasets import load_dataset
    except ImportError as e:
        raise ImportError(f"{e}. Fix: pip install -r requirements.txt, or pass --data_dir") from e
    take_signals()
    try:
        dataset = load_dataset("glue", spec.name, splits=split)
    except (OSError, RuntimeError) as e:
        raise RuntimeError(f"PaddleNLP could not fetch GLUE {spec.name} {split} ({e}); "
                           f"if offline, pass --data_dir or set GLUE_DIR") from e
    # PaddleNLP names the texts 'sentence' or 'sentence1'/'sentence2' and has already mapped
    # class labels to indices in the same label order as Task.labels; STS-B stays a string.
    keys = ("sentence",) if len(spec.text_columns) == 1 else ("sentence1", "sentence2")
    convert = float if spec.is_regression else int
    return [_make_example([ex[k] for k in keys], convert(ex["labels"])) for ex in dataset]


def load_split(task, split, data_dir=None):
    """Load one split from a local GLUE folder, or through PaddleNLP when there is none.

    Args:
        task: task name, any accepted spelling.
        split: 'train' or one of the task's dev splits.
        data_dir: local folder in GLUE TSV layout; None falls back to $GLUE_DIR, then to
            `paddlenlp.datasets.load_dataset('glue', ...)` (needs internet on first use).

    Returns:
        A list of examples, as read_split.
    """
    # Edit here to use your own dataset: return the same example dicts from your source.
    spec = get_task(task)
    data_dir = resolve_data_dir(data_dir)
    if data_dir is None:
        return _download_split(spec, split)
    return read_split(data_dir, spec.name, split)


def load_dev_splits(task, data_dir=None):
    """Load every dev split of a task that is available.

    A local folder may lack one of MNLI's two dev files: that split is skipped with a
    warning so the other one is still evaluated. No dev file at all is an error.

    Args:
        task: task name, any accepted spelling.
        data_dir: as in load_split.

    Returns:
        {split: examples} in the task's dev-split order, e.g. {'dev_matched': [...]}.

    Raises:
        FileNotFoundError: none of the task's dev files exists in the local folder.
    """
    spec = get_task(task)
    data_dir = resolve_data_dir(data_dir)
    found, missing = {}, []
    for split in spec.dev_splits:
        try:
            found[split] = load_split(spec.name, split, data_dir)
        except FileNotFoundError:
            missing.append(split_path(data_dir, spec.name, split))
    if not found:
        raise FileNotFoundError(_not_found_message(spec.name, missing))
    for path in missing:
        logger.warning("%s: not found, evaluating GLUE %s on %s only", path, spec.name, ", ".join(found))
    return found


# ----------------------------------------------------------------------------- tokenize + collate

# The model's three logical inputs, in the order Global.input_names lists their feed names.
INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
PADDING_CHOICES = ("max_length", "longest")


def convert_example(example, tokenizer, max_seq_length, task):
    """Tokenize one example into an unpadded feature.

    Uses the tokenizer `__call__` API shared by HF (`transformers`) and PaddleNLP tokenizers.

    Args:
        example: {'text_a', ['text_b'], ['label']}.
        tokenizer: HF or PaddleNLP tokenizer.
        max_seq_length: longest sequence kept, special tokens included (truncated beyond).
        task: task name; sets the label's dtype (int64 index, or float32 for STS-B).

    Returns:
        {'input_ids', 'attention_mask', 'token_type_ids': list of int, ['label': numpy scalar]}.
    """
    encoded = tokenizer(
        example["text_a"],
        example.get("text_b"),
        max_length=max_seq_length,
        truncation=True,
        return_attention_mask=True,
        return_token_type_ids=True,
    )
    feature = {key: list(encoded[key]) for key in INPUT_KEYS}
    if "label" in example:
        # A numpy scalar keeps its dtype through np.asarray in Collator.
        feature["label"] = (np.float32 if get_task(task).is_regression else np.int64)(example["label"])
    return feature


def convert_examples(examples, tokenizer, max_seq_length, task, desc="tokenize"):
    """convert_example over a list, with a progress bar (tokenize once, evaluate many times)."""
    return [convert_example(ex, tokenizer, max_seq_length, task) for ex in tqdm(examples, desc=desc, leave=False)]


class TokenizedOnRead(Sequence):
    """A list of examples that reads as their features, each tokenized when it is read (convert_example).

    For training data that a compression samples only a part of: a few hundred steps of batch 32
    read thousands of rows, while tokenizing all of MNLI or QQP up front (about 400 000 rows)
    takes minutes and holds every feature in memory.
    """

    def __init__(self, examples, tokenizer, max_seq_length, task):
        self.examples, self.tokenizer, self.max_seq_length, self.task = examples, tokenizer, max_seq_length, task

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return convert_example(self.examples[index], self.tokenizer, self.max_seq_length, self.task)


class Collator:
    """Pad a list of features into model feeds keyed by the model's feed names.

    Args:
        input_names: the model's feed names for input_ids, attention_mask and
            token_type_ids, in that order (e.g. ['x0', 'x1', 'x2'] for an X2Paddle model).
        pad_token_id: tokenizer.pad_token_id, pads input_ids.
        pad_token_type_id: tokenizer.pad_token_type_id, pads token_type_ids
            (attention_mask is always padded with 0).
        max_seq_length: the tokenization max_seq_length; the padded width for 'max_length'.
        padding: 'max_length' pads every batch to max_seq_length (traced models have a
            fixed sequence length); 'longest' pads to the longest feature in the batch.

    Calling it returns (feeds, labels): feeds maps each feed name to an int64 array
    [batch, width]; labels is int64 [batch] (float32 for STS-B), or None when the
    features have no labels. `collate_feeds` returns the feeds alone.
    """

    def __init__(self, input_names, pad_token_id, pad_token_type_id=0, max_seq_length=128, padding="max_length"):
        input_names = list(input_names)
        if len(input_names) != len(INPUT_KEYS):
            raise InputError(f"input_names must give {len(INPUT_KEYS)} feed names, for {', '.join(INPUT_KEYS)} "
                             f"in that order; got {input_names}")
        if padding not in PADDING_CHOICES:
            raise InputError(f"padding must be one of {PADDING_CHOICES}; got {padding!r}")
        self.feed_names = dict(zip(INPUT_KEYS, input_names))
        self.pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": pad_token_type_id}
        self.max_seq_length = max_seq_length
        self.padding = padding

    def __call__(self, features):
        longest = max(len(f["input_ids"]) for f in features)
        if longest > self.max_seq_length:
            raise InputError(f"a feature has {longest} tokens, more than max_seq_length={self.max_seq_length}; "
                             f"tokenize with the same max_seq_length")
        width = self.max_seq_length if self.padding == "max_length" else longest
        feeds = {}
        for key in INPUT_KEYS:
            array = np.full((len(features), width), self.pad_values[key], dtype=np.int64)
            for row, feature in zip(array, features):
                row[: len(feature[key])] = feature[key]
            feeds[self.feed_names[key]] = array
        labels = np.asarray([f["label"] for f in features]) if all("label" in f for f in features) else None
        return feeds, labels

    def collate_feeds(self, features):
        """Feeds only: the form a training/calibration loader for AutoCompression yields."""
        return self(features)[0]


def sample(items, count, seed=0):
    """A seeded random subset of `count` items, kept in their order (all of them when count is None or larger)."""
    if count is None or count >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=count, replace=False))
    return [items[i] for i in keep]


def batches(examples, batch_size, collate, shuffle=False, seed=0, drop_last=False):
    """Yield collate(batch) over a list, in order or shuffled with a fixed seed.

    Args:
        examples: list of features (output of convert_example).
        batch_size: examples per batch.
        collate: e.g. a Collator; called with each list of features.
        shuffle: visit the examples in a permutation drawn from `seed`.
        seed: seed of that permutation.
        drop_last: drop a final partial batch (training only; evaluation keeps it).
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1; got {batch_size}")
    order = np.random.default_rng(seed).permutation(len(examples)) if shuffle else np.arange(len(examples))
    stop = len(examples) - len(examples) % batch_size if drop_last else len(examples)
    for start in range(0, stop, batch_size):
        yield collate([examples[i] for i in order[start : start + batch_size]])


def paddle_feed_loader(features, batch_size, collator, shuffle=True, drop_last=True):
    """A paddle.io.DataLoader of feed dicts, the train_dataloader AutoCompression needs.

    It must be a real paddle.io.DataLoader, not a generator: paddle 2.6's post-training
    quantization (AutoCompression's QuantPost) asserts isinstance(data_loader,
    paddle.io.DataLoader). It yields {feed name: tensor} with the model's feeds only, and
    reshuffles on every pass (seed it with paddle.seed / np.random.seed).

    Args:
        features: list of features (output of convert_example).
        batch_size: examples per batch.
        collator: a Collator; its collate_feeds builds each batch.
        shuffle: reshuffle on every pass.
        drop_last: drop the final partial batch.
    """
    import paddle  # lazy: only compression needs it

    sampler = paddle.io.BatchSampler(features, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last)
    # return_list=True also works in static mode, where it yields dicts of LoDTensors.
    return paddle.io.DataLoader(features, batch_sampler=sampler, collate_fn=collator.collate_feeds,
                                return_list=True, num_workers=0)


# ----------------------------------------------------------------------------- tokenizer


def load_tokenizer(name_or_path):
    """PaddleNLP's tokenizer from a model folder (convert.py and run.py put its files next to the
    model), checked on disk first so that a local path never goes to a hub, or from a hub id."""
    import files

    if files.is_local(name_or_path) and not os.path.isfile(os.path.join(name_or_path, "vocab.txt")):
        raise InputError(f"tokenizer folder {name_or_path!r} has no vocab.txt: use a folder written by "
                         "convert.py or run.py")
    from paddlenlp.transformers import AutoTokenizer

    take_signals()
    return AutoTokenizer.from_pretrained(name_or_path)


# ----------------------------------------------------------------------------- metrics


def _accuracy(preds, labels):
    return float(np.mean(preds == labels))


def _f1(preds, labels):
    # Binary F1 of class 1 (MRPC "equivalent", QQP "duplicate"), as GLUE reports it.
    true_pos = np.sum((preds == 1) & (labels == 1))
    false_pos_neg = np.sum(preds != labels)
    denominator = 2 * true_pos + false_pos_neg
    return float(2 * true_pos / denominator) if denominator else 0.0


def _mcc(preds, labels):
    # Matthews correlation from the confusion matrix (multi-class form, equal to the
    # binary one for CoLA); 0 when either side is constant, as scikit-learn returns.
    classes, index = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    confusion = np.zeros((len(classes), len(classes)))
    np.add.at(confusion, (index[: len(labels)], index[len(labels) :]), 1)
    true_sum, pred_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    cov_true_pred = correct * n - true_sum @ pred_sum
    cov_pred_pred = n * n - pred_sum @ pred_sum
    cov_true_true = n * n - true_sum @ true_sum
    if cov_pred_pred * cov_true_true == 0:
        return 0.0
    return float(cov_true_pred / np.sqrt(cov_true_true * cov_pred_pred))


def _pearson(preds, labels):
    from scipy import stats

    return float(stats.pearsonr(preds, labels)[0])


def _spearman(preds, labels):
    from scipy import stats

    return float(stats.spearmanr(preds, labels)[0])


METRIC_FUNCTIONS = {"acc": _accuracy, "f1": _f1, "mcc": _mcc, "pearson": _pearson, "spearman": _spearman}


def compute_metrics(task, preds, labels):
    """Every metric of a task, named, in Task.metrics order.

    Args:
        task: task name, any accepted spelling.
        preds: predicted class indices, or predicted scores for STS-B; shape [n].
        labels: gold class indices or scores; shape [n].

    Returns:
        e.g. {'acc': 0.84, 'f1': 0.89} for MRPC, {'pearson': ..., 'spearman': ...} for STS-B.
    """
    spec = get_task(task)
    preds, labels = np.asarray(preds).reshape(-1), np.asarray(labels).reshape(-1)
    if preds.shape != labels.shape or preds.size == 0:
        raise InputError(f"need as many predictions as labels, at least one; got {preds.size} and {labels.size}")
    return {name: METRIC_FUNCTIONS[name](preds, labels) for name in spec.metrics}


# ----------------------------------------------------------------------------- evaluation loop


def _predictions(logits, spec, batch):
    logits = np.asarray(logits)
    if spec.is_regression:
        if logits.size != batch:
            raise InputError(f"predict_fn returned shape {logits.shape} for a batch of {batch}; "
                             f"{spec.name} expects [{batch}, 1] scores")
        return logits.reshape(-1)
    if logits.shape != (batch, spec.num_labels):
        raise InputError(f"predict_fn returned shape {logits.shape} for a batch of {batch}; "
                         f"{spec.name} expects [{batch}, {spec.num_labels}] logits")
    return logits.argmax(axis=-1)


def evaluate(predict_fn, examples_by_split, task, batch_size, collate, desc="eval", predictions=None):
    """The one evaluation loop: compressor callback, run.py --eval and infer.py.

    Args:
        predict_fn: feeds dict {feed name: int64 array} -> logits [batch, num_labels]
            (scores [batch, 1] for STS-B).
        examples_by_split: {split: labelled features (output of convert_example)},
            e.g. {'dev': [...]} or MNLI's {'dev_matched': [...], 'dev_mismatched': [...]}.
        task: task name, any accepted spelling.
        batch_size: examples per batch; the last partial batch is kept.
        collate: a Collator.
        desc: progress-bar label.
        predictions: a dict to receive {split: every row's prediction, in order} (class index, or
            score for STS-B), or None.

    Returns:
        All metrics, named: plain names ('acc', 'f1') for one split, '<split>.<metric>'
        ('dev_matched.acc') for several; plus 'headline', the task's headline metric on
        the first split (MNLI: dev_matched).
    """
    spec = get_task(task)
    if not examples_by_split:
        raise InputError("evaluate needs at least one split")
    results, headline = {}, None
    for split, examples in examples_by_split.items():
        if not examples:
            raise InputError(f"{split}: no examples to evaluate")
        preds, labels = [], []
        progress = tqdm(batches(examples, batch_size, collate), total=math.ceil(len(examples) / batch_size),
                        desc=f"{desc} {spec.name} {split}", leave=False)
        for feeds, batch_labels in progress:
            if batch_labels is None:
                raise InputError(f"{split}: evaluation needs labelled examples")
            preds.append(_predictions(predict_fn(feeds), spec, len(batch_labels)))
            labels.append(batch_labels)
        preds = np.concatenate(preds)
        if predictions is not None:
            predictions[split] = preds.tolist()
        metrics = compute_metrics(spec.name, preds, np.concatenate(labels))
        prefix = f"{split}." if len(examples_by_split) > 1 else ""
        results.update({prefix + name: value for name, value in metrics.items()})
        if headline is None:
            headline = metrics[spec.headline_metric]
    results["headline"] = headline
    return results
