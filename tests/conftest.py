"""Shared fixtures: a tiny random BERT folder and its conversions, built once per session."""
import hashlib
import importlib.util
import os

import numpy as np
import pytest

import cli  # noqa: F401  (loads the system zlib before anything imports paddle)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]
SEQ = 16
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_benchmark(name):
    """benchmarks/<name>.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(**overrides):
    from transformers import BertConfig

    kwargs = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, num_labels=2)
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def save_tiny_model(folder, model_cls_name="BertForSequenceClassification", perturb=True, vocab_extra=0,
                    **overrides):
    """Save a tiny BERT; perturb=True makes every parameter distinct (a fresh init has equal
    biases and LayerNorm weights, which torch.onnx then stores once and shares)."""
    import torch
    import transformers
    from transformers import BertTokenizer

    torch.manual_seed(0)
    model = getattr(transformers, model_cls_name)(tiny_config(**overrides)).eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    vocab = os.path.join(folder, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(VOCAB + [f"extra{i}" for i in range(vocab_extra)]) + "\n")
    BertTokenizer(vocab).save_pretrained(folder)
    return str(folder)


def folder_digest(folder):
    """Names, sizes and contents of every file below folder, to prove it was not touched."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def convert_tiny(tiny_bert, tmp_path_factory):
    """convert_tiny(method) -> (method, save_dir, convert.main's result), converted once per method."""
    import convert

    done = {}

    def get(method):
        if method not in done:
            before = folder_digest(tiny_bert)
            save_dir = str(tmp_path_factory.mktemp(f"x2paddle_{method}") / "model")
            result = convert.main(["--model_name_or_path", tiny_bert, "--method", method,
                                   "--max_seq_length", str(SEQ), "--save_dir", save_dir])
            assert folder_digest(tiny_bert) == before, "convert.py changed its input folder"
            done[method] = (method, save_dir, result)
        return done[method]

    return get


@pytest.fixture(scope="session", params=["trace", "onnx"])
def converted(request, convert_tiny):
    """(method, save_dir, convert.main's result) for each conversion method."""
    return convert_tiny(request.param)


@pytest.fixture(scope="session")
def trace_model(convert_tiny):
    """The folder of the tiny BERT converted by trace, for tests where one method is enough."""
    return convert_tiny("trace")[1]


def random_feeds(batch, seq, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, len(VOCAB), size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for row in range(1, batch):
        mask[row, seq - 2 * row:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def write_sst2_fixture(data_dir, n_train=48, n_dev=20, seed=0):
    """A GLUE-layout SST-2 folder of random sentences over the tiny vocab; returns data_dir."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(data_dir, "SST-2")
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["sentence\tlabel"]
        for i in range(n):
            words = [VOCAB[j] for j in rng.integers(5, len(VOCAB), size=int(rng.integers(2, SEQ - 3)))]
            rows.append(f"{' '.join(words)} \t{i % 2}")
        with open(os.path.join(folder, f"{split}.tsv"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return str(data_dir)


def load_model(prefix):
    """(global block, feed names, {parameter name: array}) of the inference model at `prefix`."""
    import paddle

    paddle.enable_static()
    try:
        with paddle.static.scope_guard(paddle.static.Scope()):
            exe = paddle.static.Executor(paddle.CPUPlace())
            program, feeds, _ = paddle.static.load_inference_model(prefix, exe)
            block = program.global_block()
            params = {n: np.array(paddle.static.global_scope().find_var(n).get_tensor())
                      for n, v in block.vars.items() if v.persistable and n not in ("feed", "fetch")}
    finally:
        paddle.disable_static()
    return block, feeds, params
