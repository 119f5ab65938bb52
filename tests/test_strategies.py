"""Every PaddleSlim strategy run.py offers accepts the graphs convert.py writes, both methods.

A few steps each on random data: the point is that each strategy runs, changes the model
the way it should (quantization scales on the output-channel axis, pruned heads), and
leaves a model Paddle Inference loads and runs. The full run.py comes with its own issue.
"""
import copy
import os

import numpy as np
import pytest

import convert
import glue
from conftest import SEQ, VOCAB

TRAIN = {"train_iter": 3, "eval_iter": 1000, "learning_rate": 1e-5, "logging_iter": 1,
         "optimizer_builder": {"optimizer": {"type": "AdamW"}, "weight_decay": 0.01}}
STRATEGIES = {
    "distill_qat": {"Distillation": {"alpha": 1.0, "loss": "l2"},
                    "QuantAware": {"use_pact": False, "onnx_format": True}, "TrainConfig": TRAIN},
    "prune_distill": {"Distillation": {"alpha": 1.0, "loss": "l2"},
                      "TransformerPrune": {"pruned_ratio": 0.25}, "TrainConfig": TRAIN},
    "ptq": {"QuantPost": {"batch_size": 4, "batch_nums": 2, "onnx_format": True}},
}


def random_features(n, seed=0):
    rng = np.random.default_rng(seed)
    features = []
    for i in range(n):
        length = int(rng.integers(4, SEQ + 1))
        ids = rng.integers(5, len(VOCAB), size=length).tolist()
        features.append({"input_ids": [2] + ids[: length - 2] + [3], "attention_mask": [1] * length,
                         "token_type_ids": [0] * length, "label": np.int64(i % 2)})
    return features


def compress(model_dir, strategy, save_dir):
    """A minimal AutoCompression call on a converted model; returns the saved model prefix."""
    import paddle
    from paddleslim.auto_compression import AutoCompression

    features = random_features(16)
    collate = glue.Collator(convert.INPUT_NAMES, pad_token_id=0, max_seq_length=SEQ)

    def eval_batches():  # feeds plus a label: TransformerPrune ranks heads with the loss on it
        for feeds, labels in glue.batches(features, 4, collate):
            yield {**feeds, "label": labels[:, None]}

    def eval_callback(exe, program, feed_names, fetch_list):
        def predict(feeds):
            return exe.run(program, feed={n: feeds[n] for n in feed_names}, fetch_list=fetch_list)[0]
        return glue.evaluate(predict, {"dev": features}, "sst-2", 4, collate)["headline"]

    paddle.enable_static()
    try:
        with paddle.static.scope_guard(paddle.static.Scope()):
            AutoCompression(model_dir=model_dir, model_filename="model.pdmodel", params_filename="model.pdiparams",
                            save_dir=save_dir, config=copy.deepcopy(STRATEGIES[strategy]),  # it edits the dicts
                            train_dataloader=glue.paddle_feed_loader(features, 4, collate),
                            eval_callback=eval_callback, eval_dataloader=eval_batches).compress()
    finally:
        paddle.disable_static()
    return os.path.join(save_dir, "model")


def program_of(prefix):
    import paddle

    paddle.enable_static()
    try:
        with paddle.static.scope_guard(paddle.static.Scope()):
            exe = paddle.static.Executor(paddle.CPUPlace())
            program, _, _ = paddle.static.load_inference_model(prefix, exe)
            block = program.global_block()
            params = {n: np.array(paddle.static.global_scope().find_var(n).get_tensor())
                      for n, v in block.vars.items() if v.persistable and n not in ("feed", "fetch")}
    finally:
        paddle.disable_static()
    return block, params


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_strategy_on_converted_graph(converted, strategy, tmp_path):
    method, model_dir, _ = converted
    prefix = compress(model_dir, strategy, str(tmp_path / strategy))

    run, _ = convert.paddle_predictor(prefix)
    feeds = glue.Collator(convert.INPUT_NAMES, 0, max_seq_length=SEQ).collate_feeds(random_features(3, seed=1))
    logits = run(feeds)
    assert logits.shape == (3, 2) and np.isfinite(logits).all()

    block, params = program_of(prefix)
    matmul_y = {op.input("Y")[0] for op in block.ops if op.type == "matmul_v2"}
    if strategy in ("distill_qat", "ptq"):
        dequant = [op for op in block.ops if op.type == "dequantize_linear" and op.output("Y")[0] in matmul_y
                   and op.input("X")[0] in params]
        assert len(dequant) >= 2 * 6  # every encoder linear is quantized
        users = {op.input("Y")[0]: op for op in block.ops if op.type == "matmul_v2"}
        for op in dequant:
            # weights are [in, out]: one scale per output channel, on axis 1
            assert not users[op.output("Y")[0]].attr("trans_y")
            assert op.attr("quant_axis") == 1
            assert params[op.input("Scale")[0]].size == params[op.input("X")[0]].shape[1]
    else:
        shapes = [params[name].shape for name in matmul_y if name in params]
        assert shapes.count((32, 24)) == 3 * 2  # q, k, v of 2 layers: 3 of 4 heads kept
        assert shapes.count((24, 32)) == 2  # attention output
        assert shapes.count((32, 27)) == 2 and shapes.count((27, 32)) == 2  # FFN: int(37 * 3 / 4) neurons
        heads = [op.attr("shape")[2] for op in block.ops if op.type == "reshape2" and len(op.attr("shape")) == 4]
        assert heads == [3] * 6
