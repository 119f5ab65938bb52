"""convert.py on a tiny random BERT: parity with PyTorch, the rewritten graph, bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import convert
import files
import cli
import glue
import predictors
from conftest import ROOT, SEQ, folder_digest, load_model, random_feeds, save_tiny_model



def torch_logits(model_dir, feeds):
    model, _ = convert.load_torch_model(model_dir)
    return convert.torch_logits(convert.logits_module(model), feeds)


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--method {trace,onnx}" in out and "fixed at" in out


def test_parity_reported(converted):
    method, save_dir, result = converted
    parity = result["parity"]
    assert parity["max_abs_diff"] <= 1e-4
    shapes = {(c["batch_size"], c["seq_len"]) for c in parity["checks"]}
    assert (1, SEQ) in shapes and (3, SEQ) in shapes  # not the traced batch of 2
    if method == "onnx":
        assert any(seq != SEQ for _, seq in shapes)
    with open(os.path.join(save_dir, "convert.json")) as f:
        assert json.load(f) == result


def test_parity_independent(converted, tiny_bert):
    """A fresh Paddle Inference predictor agrees with PyTorch on inputs convert.py never saw."""
    method, save_dir, _ = converted
    run = predictors.cpu_predictor(os.path.join(save_dir, "model"))
    assert sorted(files.read_paddle_model(os.path.join(save_dir, "model.pdmodel")).feeds) == sorted(convert.INPUT_NAMES)
    shapes = [(5, SEQ)] + ([(2, 7), (3, 40)] if method == "onnx" else [])
    for batch, seq in shapes:
        feeds = random_feeds(batch, seq, seed=batch * 100 + seq)
        paddle_out = run(feeds)
        torch_out = torch_logits(tiny_bert, feeds)
        assert paddle_out.shape == (batch, 2)
        np.testing.assert_allclose(paddle_out, torch_out, atol=1e-4, rtol=0)


def test_output_folder(converted, tiny_bert):
    method, save_dir, result = converted
    for name in ("model.pdmodel", "model.pdiparams", "convert.json") + glue.TOKENIZER_FILES:
        assert os.path.isfile(os.path.join(save_dir, name)), name
    assert result["method"] == method
    assert [f["name"] for f in result["feeds"]] == list(convert.INPUT_NAMES)
    assert result["feeds"][0]["shape"] == [-1, SEQ if method == "trace" else -1]
    assert result["opset"] == (13 if method == "onnx" else None)
    assert {"paddlepaddle", "x2paddle", "torch", "transformers"} <= set(result["versions"])
    assert not [n for n in os.listdir(os.path.dirname(save_dir)) if n.startswith(".convert-")]


def test_paddlenlp_tokenizer_loads_from_output(converted, tiny_bert):
    from paddlenlp.transformers import AutoTokenizer as PaddleTokenizer
    from transformers import AutoTokenizer

    _, save_dir, _ = converted
    text_a, text_b = "w1 w2 w3 w17", "w5 w90"
    ours = PaddleTokenizer.from_pretrained(save_dir)(text_a, text_b)
    theirs = AutoTokenizer.from_pretrained(tiny_bert)(text_a, text_b)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["token_type_ids"] == theirs["token_type_ids"]


def test_graph_looks_native(converted):
    """The form PaddleSlim's pattern matcher, pruner and quantizer rely on."""
    _, save_dir, _ = converted
    block, feeds, _ = load_model(os.path.join(save_dir, "model"))
    assert feeds == list(convert.INPUT_NAMES)
    ops = block.ops
    params = {n for n, v in block.vars.items() if v.persistable and n not in ("feed", "fetch")}

    linears = [op for op in ops if op.type == "matmul_v2" and op.input("Y")[0] in params]
    assert len(linears) == 2 * 6 + 2  # per layer q, k, v, out, ffn1, ffn2; pooler; classifier
    for op in linears:
        assert not op.attr("trans_y")
        bias_add = [o for o in ops if o.type == "elementwise_add" and op.output("Out")[0] in o.input_arg_names]
        assert len(bias_add) == 1 and bias_add[0].input("Y")[0] in params  # bias on the right

    assert sum(op.type == "layer_norm" for op in ops) == 2 * 2 + 1
    assert not [op for op in ops if op.type in ("reduce_mean", "sqrt", "elementwise_pow", "assign")]
    for op in ops:
        if op.type in convert.XSHAPE_OPS:
            assert op.output("XShape"), op.type
        if op.type == "reshape2" and len(block.var(op.input("X")[0]).shape) >= 3:  # the attention reshapes
            assert not convert.optional_input(op, "Shape") and op.attr("shape")[0] == 0

    uses = {}
    for op in ops:
        for name in op.input_arg_names:
            if name in params:
                uses[name] = uses.get(name, 0) + 1
    assert max(uses.values()) == 1


def test_shared_onnx_initializers_are_unshared(tmp_path):
    """A freshly initialised model has equal biases: torch.onnx stores them once, X2Paddle
    shares the one parameter; pruning or quantizing it for one layer must not touch others."""
    model_dir = save_tiny_model(tmp_path / "fresh", perturb=False)
    result = convert.main(["--model_name_or_path", model_dir, "--method", "onnx", "--max_seq_length", "8",
                           "--save_dir", str(tmp_path / "out")])
    assert result["parity"]["max_abs_diff"] <= 1e-4
    block, _, _ = load_model(str(tmp_path / "out" / "model"))
    readers = [n for op in block.ops for n in op.input_arg_names
               if block.var(n).persistable and n not in ("feed", "fetch")]
    assert len(readers) == len(set(readers))


def test_bare_encoder_gets_new_head(tmp_path):
    encoder = save_tiny_model(tmp_path / "encoder", model_cls_name="BertModel")
    with pytest.raises(cli.InputError, match="not a sequence-classification model.*--num_labels"):
        convert.main(["--model_name_or_path", encoder, "--save_dir", str(tmp_path / "out")])
    result = convert.main(["--model_name_or_path", encoder, "--num_labels", "3", "--max_seq_length", "8",
                           "--save_dir", str(tmp_path / "out")])
    assert result["num_labels"] == 3 and result["parity"]["max_abs_diff"] <= 1e-4


# ---------------------------------------------------------------------------------- bad input
def expect_refusal(tmp_path, argv, match):
    """The error matches, and nothing new appears in tmp_path."""
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(cli.InputError, match=match):
        convert.main(argv)
    assert sorted(os.listdir(tmp_path)) == before


def test_missing_model_folder(tmp_path):
    expect_refusal(tmp_path, ["--model_name_or_path", str(tmp_path / "nope"), "--save_dir", str(tmp_path / "out")],
                   "does not exist")


def test_unsupported_architecture(tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model_dir = tmp_path / "distil"
    DistilBertForSequenceClassification(DistilBertConfig(vocab_size=99, dim=32, n_layers=1, n_heads=2,
                                                         hidden_dim=37)).save_pretrained(model_dir)
    expect_refusal(tmp_path, ["--model_name_or_path", str(model_dir), "--save_dir", str(tmp_path / "out")],
                   "'distilbert' model; supported: BERT-family")


def test_max_seq_length_above_position_limit(tmp_path, tiny_bert):
    expect_refusal(tmp_path, ["--model_name_or_path", tiny_bert, "--max_seq_length", "65",
                              "--save_dir", str(tmp_path / "out")], "above the model's position limit \\(64\\)")


def test_save_dir_not_empty(tmp_path, tiny_bert):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    expect_refusal(tmp_path, ["--model_name_or_path", tiny_bert, "--save_dir", str(out)],
                   "not empty: choose another folder or pass --overwrite")
    assert os.listdir(out) == ["keep.txt"]


def test_overwrite_replaces_save_dir(tmp_path, tiny_bert):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "convert.json").write_text("{}")  # an earlier output of convert.py
    convert.main(["--model_name_or_path", tiny_bert, "--max_seq_length", "8", "--save_dir", str(out),
                  "--overwrite"])
    assert "old.txt" not in os.listdir(out) and "model.pdmodel" in os.listdir(out)


@pytest.mark.parametrize("inside", ["", "sub"])
def test_save_dir_in_input_folder(tmp_path, inside):
    model_dir = save_tiny_model(tmp_path / "model")
    before = folder_digest(model_dir)
    with pytest.raises(cli.InputError, match="contains or lies inside the input"):
        convert.main(["--model_name_or_path", model_dir, "--save_dir", os.path.join(model_dir, inside),
                      "--overwrite"])
    assert folder_digest(model_dir) == before


def test_cli_prints_one_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "convert.py"), "--model_name_or_path",
                           str(tmp_path / "nope"), "--save_dir", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --model_name_or_path") and "model folder does not exist" in last
    assert "Traceback" not in proc.stderr
