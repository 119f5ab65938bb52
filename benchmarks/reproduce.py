"""The document's tables, reproduced on real GLUE data with a real pretrained model, per task.

    python benchmarks/reproduce.py --data_dir $GLUE_DIR --tasks sst-2 rte mrpc
    python benchmarks/reproduce.py --render_only                            # tables from results.json

For each task: fine-tune the packaged all-MiniLM-L6-v2 (benchmarks/finetune.py, PyTorch, CPU)
-> convert.py (trace, sequence length 128) -> run.py --eval on the converted model (must equal
the PyTorch metric within 0.1 point) -> run.py with each strategy (pruning + distillation then
post-training quantization, the document's headline; distillation + QAT, the document's
configs) -> infer.py --int8 on each compressed model (dev metric as deployed), and with --backend
openvino (the peer runtime) -> infer.py --perf for the base and each compressed model, batch 1 and 32,
all in one window (rounds that take the models in turn);
and the strongest peer's own post-training int8 of the same fine-tuned model (OpenVINO + NNCF,
benchmarks/latency/peer.py), scored on the same dev set.

Resumable: every finished step is recorded in <work_dir>/<task>/steps.json with what it depends on
(the fine-tuning arguments, the config and overrides, the model it reads) and not redone while those
stay the same; a step whose inputs changed runs again, and so does every step after it (a
compression whose config file changed but whose effective config, the overrides applied, did not is
kept: keep_same_compression). A change of the scripts' code is not seen: give such a run a fresh
--work_dir. A log per task goes to <work_dir>/<task>/reproduce.log. Results:
benchmarks/reproduce/results.json and RESULTS.md (the README's tables are rendered from them). A run
replaces the rows of the tasks it ran and keeps the others from the results.json already in
--save_dir, each row with the run (command, machine, versions, settings) it came from: the eight
tasks can be run a few at a time, on other days.
"""
import argparse
import copy
import hashlib
import itertools
import json
import logging
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import cli  # noqa: E402
import glue  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "latency"))
import peer  # noqa: E402

ROOT = common.ROOT
SEQ = 128
OUT_DIR = os.path.join(HERE, "reproduce")
# The goal, in points of dev metric: each strategy's average over the tasks at most AVERAGE_LOSS below the
# base's, and no task more than TASK_LOSS below its base; and at batch 32 each compressed model at least
# SPEEDUP_B32 times as fast as its base.
AVERAGE_LOSS, TASK_LOSS, SPEEDUP_B32 = 0.3, 1.0, 2.4
logger = logging.getLogger("reproduce")

# Fine-tuning budget per task on 2 CPU cores (minutes each). Edit here for a longer run.
FINETUNE = {
    "cola": ["--epochs", "4", "--max_seq_length", "64"],  # 2 left it near chance (dev MCC 19.96, 25.25 at 4)
    "sst-2": ["--max_train_samples", "8000", "--max_seq_length", "64"],
    "mrpc": ["--epochs", "3"],
    "sts-b": ["--epochs", "2"],
    "qqp": ["--max_train_samples", "8000"],
    "mnli": ["--max_train_samples", "16000"],
    "qnli": ["--max_train_samples", "8000"],
    "rte": ["--epochs", "6"],  # 3 left it near chance (dev 55.96 %, 59.93 at 6)
}
# Dev rows each compression evaluates (before, every eval_iter steps, after) where the dev set is
# large; the reported metrics (PyTorch, converted, infer.py) always score the whole dev set.
EVAL_SAMPLES = {"qqp": 1000, "mnli": 1000, "qnli": 1000}
# The strategies: shipped config, sections left out, overrides beyond the common ones. The headline
# keeps its HyperParameterOptimization search, on the budget its config states. Both training
# strategies train a few dozen steps, not the configs' 3 epochs; QAT at a learning rate for that budget.
# The pruned model's distillation keeps the configs' 2e-5: 1e-4 kept more of SST-2, as much of RTE and
# QNLI, less of CoLA (benchmarks/reproduce/prune_lr1e-4, one run each).
STRATEGIES = {
    "prune_ptq": {"label": "prune + distill, then PTQ", "config": "{task}_prune_ptq.yaml", "drop": [], "set": []},
    "distill_qat": {"label": "distill + QAT", "config": "{task}.yaml", "drop": [],
                    "set": ["TrainConfig.learning_rate=1.0e-5"]},
    "ptq": {"label": "PTQ", "config": "{task}_ptq.yaml", "drop": [], "set": []},
}
# The peer's PTQ of the fine-tuned HF model (benchmarks/latency/peer.py: NNCF, model_type TRANSFORMER, on
# peer.CALIBRATION_ROWS training sentences), scored beside the strategies and judged by the same accuracy goal.
PEER, PEER_KIND, PEER_LABEL = "peer_nncf", "openvino nncf int8", "OpenVINO + NNCF PTQ (peer)"
LABELS = {"base": "base (fp32)", **{k: v["label"] for k, v in STRATEGIES.items()}, PEER: PEER_LABEL}


def digest(value):
    """A short fingerprint of a JSON value: a step's inputs, as the steps that read its output name them."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


class Steps:
    """<work_dir>/<task>/steps.json: the result of every finished step, so a rerun skips it."""

    def __init__(self, path):
        self.path = path
        self.done = {}
        self.used = []  # the steps run, or found done with the same inputs, since this object was made
        if os.path.isfile(path):
            with open(path) as f:
                self.done = json.load(f)

    def is_done(self, name, inputs=None):
        """Whether the step finished before with these inputs (JSON: what its result depends on, a digest() of
        another step's inputs for the model that step made)."""
        return name in self.done and self.done[name].get("inputs") == json.loads(json.dumps(inputs))

    def run(self, name, fn, inputs=None):
        """fn's result, from steps.json if the step is_done with these inputs; else fn runs."""
        if self.is_done(name, inputs):
            logger.info("%s: done before, skipped", name)
            self.used.append(name)
            return self.done[name]["result"]
        if name in self.done:
            logger.info("%s: done before with other inputs (%s, now %s), runs again", name,
                        json.dumps(self.done[name].get("inputs"), sort_keys=True), json.dumps(inputs, sort_keys=True))
        logger.info("%s: start", name)
        start = time.perf_counter()
        result = fn()
        self.done[name] = {"result": result, "seconds": round(time.perf_counter() - start, 1),
                           "inputs": json.loads(json.dumps(inputs))}  # as steps.json holds them (tuples as lists)
        self.used.append(name)
        cli.write_json(self.path, self.done)
        logger.info("%s: done in %.0f s", name, self.done[name]["seconds"])
        return result

    def rekey(self, name, inputs):
        """Record finished step `name` under new inputs that say the same in another form; every step that named
        the model it made (the digest of its old inputs) names the new digest, so none of them runs again either."""
        old, new = digest(self.done[name]["inputs"]), digest(inputs)

        def swap(value):
            if isinstance(value, dict):
                return {k: swap(v) for k, v in value.items()}
            if isinstance(value, list):
                return [swap(v) for v in value]
            return new if value == old else value

        for step in self.done.values():
            if "inputs" in step:
                step["inputs"] = swap(step["inputs"])
        self.done[name]["inputs"] = json.loads(json.dumps(inputs))
        cli.write_json(self.path, self.done)


def shipped_path(task, key):
    """The config file a strategy runs, as configs/ ships it for the task."""
    return os.path.join(ROOT, "configs", STRATEGIES[key]["config"].format(task=task))


def shipped_config(task, key):
    import yaml

    with open(shipped_path(task, key)) as f:
        return yaml.safe_load(f)


def base_inputs(task):
    """What a task's converted base model depends on (the inputs of prepare_base's last steps)."""
    return {"finetune": FINETUNE[task], "seq": SEQ}


def eval_sample(task):
    """The --set override that has run.py evaluate a seeded sample of a large dev split (EVAL_SAMPLES), or none."""
    return [f"Global.eval_samples={EVAL_SAMPLES[task]}"] if task in EVAL_SAMPLES else []


def strategy_config(task, key, work_dir, train_iter, drop=(), extra=()):
    """The shipped config of the strategy, minus the sections it and `drop` leave out, in work_dir.

    Returns:
        (config path, --set overrides: batch 32, the strategy's own, the task's dev sample, no origin_metric
         check, train_iter steps, then `extra`)
    """
    import yaml

    strategy = STRATEGIES[key]
    config = shipped_config(task, key)
    for section in list(strategy["drop"]) + list(drop):
        config.pop(section, None)
    path = os.path.join(work_dir, f"{key}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    sets = ["Global.batch_size=32"] + strategy["set"] + eval_sample(task)
    if "TrainConfig" in config:
        sets += ["TrainConfig.origin_metric=null", "TrainConfig.epochs=null", f"TrainConfig.train_iter={train_iter}",
                 f"TrainConfig.eval_iter={max(1, train_iter // 2)}"]
    return path, sets + list(extra)


def config_digest(path):
    """digest() of a config file's text."""
    with open(path, encoding="utf-8") as f:
        return digest(f.read())


def keep_same_compression(steps, name, inputs, config, sets, base, data_dir):
    """A compression done before with other inputs is kept, not run again, when it compressed the same base model
    with the very config run.py would run now (the file with the --set overrides applied, as its results.json
    records it): the shipped config changed in form only, e.g. an override moved into it. Its steps are
    recorded under `inputs` (Steps.rekey)."""
    import run

    found = steps.done.get(name)
    if found is None or steps.is_done(name, inputs) or "config" not in found["result"] or \
            (found.get("inputs") or {}).get("model") != inputs["model"]:
        return
    gcfg, sections = run.load_config(config, model_dir=base, data_dir=data_dir, overrides=sets)
    if found["result"]["config"] == json.loads(json.dumps({"Global": gcfg, **sections})):
        logger.info("%s: done before with the same base model and effective config, kept", name)
        steps.rekey(name, inputs)


def prepare_base(task, args):
    """Fine-tune, convert and check one task's base model (each step once: <work_dir>/<task>/steps.json).

    Returns:
        the converted model's folder.
    """
    import convert
    import finetune
    import run

    work = os.path.join(args.work_dir, task)
    os.makedirs(work, exist_ok=True)
    steps = Steps(os.path.join(work, "steps.json"))
    hf, base = os.path.join(work, "hf"), os.path.join(work, "paddle-fp32")
    data = ["--data_dir", args.data_dir] if args.data_dir else []  # none: PaddleNLP downloads GLUE
    inputs = base_inputs(task)
    tuned = steps.run("finetune", lambda: finetune.main(
        ["--task_name", task, "--save_dir", hf, "--overwrite"] + data + FINETUNE[task]), {"finetune": FINETUNE[task]})
    steps.run("convert", lambda: convert.main(["--model_name_or_path", hf, "--method", "trace",
                                               "--max_seq_length", str(SEQ), "--save_dir", base,
                                               "--overwrite"])["parity"], inputs)
    shipped = os.path.join(ROOT, "configs", f"{task}.yaml")
    converted = steps.run("eval_converted", lambda: run.main(
        ["--config_path", shipped, "--eval", "--model_dir", base, "--save_dir", os.path.join(work, "eval"),
         "--overwrite"] + data)["metrics"], inputs)
    gap = abs(converted["headline"] - tuned["dev_metrics"]["headline"]) * 100
    if gap > 0.1:
        raise RuntimeError(f"{task}: the converted model scores {gap:.2f} points off PyTorch (limit 0.1)")
    return base


def compress(config, base, out, extra):
    """run.py in its own process, so that its peak resident memory is its own: its results.json + peak_rss_mb."""
    argv = [os.path.join(ROOT, "run.py"), "--config_path", config, "--model_dir", base, "--save_dir", out,
            "--overwrite"] + extra
    logger.info("run.py runs in its own process; follow it in %s", out + ".log")
    result, _, peak_mb = common.run_script(argv, out + ".log")
    return {**result, "peak_rss_mb": peak_mb, "peak_rss_own": True}


def latency_window(task, models, data, args, save_dir):
    """{model key: {batch size: infer.py --perf result}} of a task's models, all timed in one window.

    Timed apart (each model when its step ran, hours or days from the others), the same fp32 MiniLM's p50 at
    batch 32 ranged from 291 to 413 ms over the tasks on one kind of machine. Here args.perf_rounds rounds each
    time every model once per batch size, each round starting one model later; a model's result is its round
    with the median p50, and "p50_ms_rounds" lists every round's p50 in order.

    Args:
        models: {key: (model folder, infer.py flags, digest)}, the base first.
    """
    keys, rounds = list(models), {key: {} for key in models}
    for r in range(args.perf_rounds):
        for batch, count in zip(args.batch_sizes, args.perf_steps):
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                path, flags, _ = models[key]
                rounds[key].setdefault(str(batch), []).append(common.run_infer(
                    task, path, flags + data + ["--batch_size", str(batch), "--max_seq_length", str(SEQ), "--perf",
                                                "--perf_steps", str(count)], save_dir))
    return {key: {batch: {**sorted(found, key=lambda f: f["p50_ms"])[len(found) // 2],
                          "p50_ms_rounds": [f["p50_ms"] for f in found]} for batch, found in batches.items()}
            for key, batches in rounds.items()}


def run_task(task, args):
    work = os.path.join(args.work_dir, task)
    os.makedirs(work, exist_ok=True)
    handler = logging.FileHandler(os.path.join(work, "reproduce.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    data = ["--data_dir", args.data_dir] if args.data_dir else []  # none: PaddleNLP downloads GLUE
    try:
        base = prepare_base(task, args)
        steps = Steps(os.path.join(work, "steps.json"))
        base_model = digest(base_inputs(task))
        models = {"base": (base, [], base_model)}
        for key in args.strategies:
            out = os.path.join(work, key)
            config, sets = strategy_config(task, key, work, train_iter_of(key, vars(args)), extra=args.set[key])
            inputs = {"model": base_model, "config": config_digest(config), "sets": sets}
            keep_same_compression(steps, f"compress_{key}", inputs, config, sets, base, args.data_dir)
            steps.run(f"compress_{key}", lambda: compress(config, base, out, data + [a for s in sets for a in ("--set", s)]),
                      inputs)
            models[key] = (out, ["--int8"], digest(inputs))
        for key, (path, flags, model) in models.items():
            steps.run(f"infer_{key}", lambda: common.run_infer(  # its predictions.json stays in dev/<key>
                task, path, flags + data + ["--batch_size", "32", "--max_seq_length", str(SEQ)],
                os.path.join(work, "dev", key))["metrics"], {"model": model})
            if flags:  # the same int8 model as the peer runtime deploys it
                steps.run(f"infer_{key}_openvino", lambda: common.run_infer(
                    task, path, flags + data + ["--batch_size", "32", "--max_seq_length", str(SEQ), "--backend",
                                                "openvino"], os.path.join(work, "infer"))["metrics"], {"model": model})
        steps.run("latency", lambda: latency_window(task, models, data, args, os.path.join(work, "infer")),
                  {"models": {key: model for key, (_, _, model) in models.items()}, "batch_sizes": args.batch_sizes,
                   "perf_steps": args.perf_steps, "rounds": args.perf_rounds})
        if "ptq" in args.strategies:  # PTQ's spread over calibration draws (seed 0 is the run above)
            for seed in args.ptq_seeds:
                key, out = f"ptq_seed{seed}", os.path.join(work, f"ptq_seed{seed}")
                config, sets = strategy_config(task, "ptq", work, args.train_iter, extra=args.set["ptq"])
                inputs = {"model": base_model, "config": config_digest(config), "sets": sets + [f"Global.seed={seed}"]}
                keep_same_compression(steps, f"compress_{key}", inputs, config, inputs["sets"], base, args.data_dir)
                steps.run(f"compress_{key}", lambda: compress(
                    config, base, out, data + [a for s in inputs["sets"] for a in ("--set", s)]), inputs)
                steps.run(f"infer_{key}", lambda: common.run_infer(
                    task, out, ["--int8"] + data + ["--batch_size", "32", "--max_seq_length", str(SEQ)],
                    os.path.join(work, "dev", key))["metrics"], {"model": digest(inputs)})
        # accuracy only (one timed batch): the peers' latency is benchmarks/latency's
        steps.run(PEER, lambda: common.run_peer(PEER_KIND, os.path.join(work, "hf"), os.path.join(work, "peer"), task,
                                                32, 1, 0, os.cpu_count() or 1, args.data_dir, accuracy=True)["metrics"],
                  {"finetune": FINETUNE[task], "calibration_rows": peer.CALIBRATION_ROWS})
    finally:
        logging.getLogger().removeHandler(handler)
    # this run's steps: a strategy it left out, or one whose inputs it changed, is not reported from an older run
    return {name: steps.done[name] for name in ("finetune", "convert", "eval_converted", *steps.used)}


def sign_test(worse, better):
    """Two-sided exact sign test (McNemar's, exact): the chance of a split of the changed rows at least
    this uneven if each change were a coin flip."""
    import math

    n = worse + better
    tail = sum(math.comb(n, i) for i in range(min(worse, better) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def changed_rows(base_file, model_file, indices=False):
    """The dev rows (first split) whose predicted class a compressed model changed against the base, or None
    (a regression task, or a prediction file missing: the task ran before infer.py wrote them).

    Returns:
        {"rows": dev rows, "to_wrong": right in the base, wrong now, "to_right": the reverse, "p": sign_test},
        and with `indices` the rows themselves, "wrong_rows" and "right_rows" (their positions in the split)
    """
    if not (os.path.isfile(base_file) and os.path.isfile(model_file)):
        return None
    with open(base_file) as f:
        base = next(iter(json.load(f).values()))
    with open(model_file) as f:
        model = next(iter(json.load(f).values()))
    if any(isinstance(p, float) for p in base["prediction"]):
        return None
    right = [p == y for p, y in zip(base["prediction"], base["label"])]
    now = [p == y for p, y in zip(model["prediction"], model["label"])]
    worse = [i for i, (r, n) in enumerate(zip(right, now)) if r and not n]
    better = [i for i, (r, n) in enumerate(zip(right, now)) if n and not r]
    changed = {"rows": len(right), "to_wrong": len(worse), "to_right": len(better),
               "p": round(sign_test(len(worse), len(better)), 3)}
    return {**changed, "wrong_rows": worse, "right_rows": better} if indices else changed


def summarize(task, done, work):
    """One task's row: metrics per model, latency per model and batch, wall time per stage, and the dev rows
    each compressed model changed (work: the task's work folder, where infer.py left the predictions)."""
    metric = glue.headline_metric(task)
    row = {"task": task, "metric": metric, "finetune": done["finetune"]["result"],
           "pytorch": done["finetune"]["result"]["dev_metrics"], "converted": done["eval_converted"]["result"],
           "seconds": {k: v["seconds"] for k, v in done.items()}, "models": {}}
    for key in ["base"] + list(STRATEGIES):
        if f"infer_{key}" not in done:  # a strategy this run left out
            continue
        entry = {"metrics": done[f"infer_{key}"]["result"], "perf": done["latency"]["result"].get(key, {})}
        if key != "base":
            compressed = done[f"compress_{key}"]["result"]
            entry.update(strategies=compressed["strategies"], metrics_run=compressed["metrics_after"],
                         run_dev_samples=compressed.get("dev_samples"),
                         metrics_openvino=done.get(f"infer_{key}_openvino", {}).get("result"),
                         changed=changed_rows(*(os.path.join(work, "dev", k, "predictions.json") for k in ("base", key))),
                         compress_seconds=compressed["compress_seconds"],
                         peak_rss_mb=compressed.get("peak_rss_mb"), peak_rss_own=compressed.get("peak_rss_own", False),
                         # None: run.py predates workarounds.mkl_avx2_on_amd
                         mkl_avx2_on_amd=compressed["mkl_debug_cpu_type"] == "5" if "mkl_debug_cpu_type" in compressed
                         else None)
        row["models"][key] = entry
    seeds = {name[len("infer_ptq_seed"):]: step["result"] for name, step in done.items()
             if name.startswith("infer_ptq_seed")}
    if seeds and "ptq" in row["models"]:
        row["models"]["ptq"]["metrics_by_seed"] = {"0": row["models"]["ptq"]["metrics"], **seeds}
    if PEER in done:
        row["models"][PEER] = {"metrics": done[PEER]["result"], "perf": {}}
    return row


def run_of(results):
    """The run a results dict records at its top: command, machine, versions, settings."""
    return {k: results.get(k) for k in ("command", "machine", "versions", "settings")}


def merge_rows(previous, rows, run):
    """The task rows of a results.json after this run: the previous rows (previous: the results.json found in
    --save_dir, or None) in their order, each replaced by this run's row of its task, then the tasks new to it.
    A replaced row's hand-noted `shared_cpu` stages stay noted where this run kept their time (the step did not rerun).

    Args:
        rows: this run's finished rows; each gets `run` (run_of this run's results) as its "run".
    """
    merged = {}
    for row in previous["tasks"] if previous else []:
        merged[row["task"]] = {**row, "run": row.get("run") or run_of(previous)}  # written before rows kept their run
    for row in rows:
        old = merged.get(row["task"], {})
        shared = [s for s in old.get("shared_cpu", ()) if old["seconds"].get(s) == row["seconds"].get(s)]
        merged[row["task"]] = {**row, "run": run, **({"shared_cpu": shared} if shared else {})}
    return list(merged.values())


def runs(results):
    """The runs the rows came from, in the order of their first row: [(run, [tasks])]."""
    def same(a, b):  # the command differs from run to run (--tasks)
        return all(a.get(k) == b.get(k) for k in ("machine", "versions", "settings"))

    groups = []
    for row in results["tasks"]:
        run = row.get("run") or run_of(results)
        tasks = next((tasks for other, tasks in groups if same(other, run)), None)
        if tasks is None:
            groups.append((run, [row["task"]]))
        else:
            tasks.append(row["task"])
    return groups


def describe_run(run, tasks):
    """One run of `tasks`, as the tables' provenance names it: machine, steps and overrides per strategy, versions,
    command."""
    m = run["machine"]
    return (f"{m['cpu']} ({', '.join(m['isa'])}), {m['cores']} cores; {training(run.get('settings'), tasks)}; "
            + ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items()) + f"; `{run['command']}`")


def train_iter_of(key, settings):
    """The training steps strategy `key` runs with (settings: a results["settings"], or vars(args)); runs from
    before --prune_train_iter trained every strategy train_iter steps."""
    if key == "prune_ptq" and settings.get("prune_train_iter"):
        return settings["prune_train_iter"]
    return settings.get("train_iter")


def trained_steps(settings):
    """{label: training steps} of a run's training strategies (PTQ alone does not train)."""
    return {LABELS[k]: train_iter_of(k, settings) for k in (settings or {}).get("strategies", {}) if k != "ptq"}


def shipped_now(key, override, tasks):
    """Whether strategy `key`'s shipped config of every task in `tasks` holds `override` (SECTION.KEY=VALUE, applied
    as run.py --set applies it) today: a run's override that the configs have taken in since, so that a later run
    has it without naming it."""
    import run

    def holds(task):
        config = shipped_config(task, key)
        applied = copy.deepcopy(config)
        run.apply_overrides(applied, [override], shipped_path(task, key))
        return applied == config

    return bool(tasks) and all(holds(task) for task in tasks)


def training(settings, tasks=()):
    """A run's training steps and its overrides of each strategy's shipped config (settings: results["settings"]);
    an override that the shipped configs of all its `tasks` hold today is marked so."""
    settings = settings or {}
    strategies = "; ".join(f"{k} " + (" ".join(f"`{s}`" + (" (shipped now)" if shipped_now(k, s, tasks) else "")
                                               for s in v["set"]) or "as shipped")
                           for k, v in settings.get("strategies", {}).items())
    counts = trained_steps(settings)
    if len(set(counts.values())) > 1:
        steps = "training steps: " + ", ".join(f"{label} {n}" for label, n in counts.items()) + "; "
    else:
        steps = "".join(f"{n} training steps; " for n in set(counts.values()))
    return f"{steps}overrides: {strategies or 'none recorded'}"


def deployed(model, how):
    """A model's dev metrics as `how` deploys it: "paddle" (infer.py, --int8 for a compressed model), or
    "openvino" (its int8 score under --backend openvino where measured, else the Paddle one: the base)."""
    return (model.get("metrics_openvino") or model["metrics"]) if how == "openvino" else model["metrics"]


def tasks_count(n, kind=""):
    """'1 task', '3 GLUE tasks'."""
    return f"{n} {kind}task{'s' if n > 1 else ''}"


def goal_lines(results, keys, how="paddle"):
    """The goal, and per strategy whether it is met, judged on the numbers as the tables show them."""
    n = len(results["tasks"])
    lines = [f"Goal (over {tasks_count(n)}): each strategy's average dev metric at most {AVERAGE_LOSS} "
             f"point below the base's, no task more than {TASK_LOSS} point below, and at batch 32 at least "
             f"{SPEEDUP_B32}× the base's speed."]
    for k in keys:
        rows = [row for row in results["tasks"] if k in row["models"]]
        if len(rows) < n:
            continue
        exact = [100 * (deployed(row["models"][k], how)["headline"] - row["models"]["base"]["metrics"]["headline"])
                 for row in rows]
        changes = [round(c, 2) for c in exact]
        average = round(sum(exact) / n, 2)  # as the headline table computes it
        worst = min(zip(changes, (row["task"] for row in rows)))
        speedups = [row["models"]["base"]["perf"]["32"]["p50_ms"] / row["models"][k]["perf"]["32"]["p50_ms"]
                    for row in rows if "32" in row["models"][k].get("perf", {})]
        accurate = average >= -AVERAGE_LOSS and worst[0] >= -TASK_LOSS
        verdict = f"- {LABELS[k]}: average {average:+.2f} points, worst {worst[1]} {worst[0]:+.2f}: accuracy " \
                  f"{'met' if accurate else 'not met'}"
        if k == PEER:  # its latency is benchmarks/latency's
            lines.append(verdict)
            continue
        fast = len(speedups) == n and round(min(speedups), 2) >= SPEEDUP_B32
        slowest = f"{min(speedups):.2f}×" if speedups else "not measured"
        lines.append(f"{verdict}; slowest batch-32 speed-up {slowest}: speed {'met' if fast else 'not met'}")
    return lines


def dev_table(results, keys, how):
    """The dev metric table, one row per task and an average, each model's metric as `how` deploys it."""
    lines = ["| task | metric | train rows used | PyTorch | " + " | ".join(LABELS[k] for k in keys) + " |",
             "|---|---|---|---|" + "---|" * len(keys)]
    sums = {k: [] for k in ["pytorch"] + keys}
    for row in results["tasks"]:
        tuned = row["finetune"]
        cells = [row["task"], row["metric"], f"{tuned['train_samples']} of {tuned['train_samples_available']}",
                 f"{100 * row['pytorch']['headline']:.2f}"]
        sums["pytorch"].append(row["pytorch"]["headline"])
        for k in keys:
            entry = row["models"].get(k)
            cells.append(f"{100 * deployed(entry, how)['headline']:.2f}" if entry else "–")
            if entry:
                sums[k].append(deployed(entry, how)["headline"])
        lines.append("| " + " | ".join(cells) + " |")
    if len(results["tasks"]) > 1:
        lines.append("| average | | | " + " | ".join(
            f"{100 * sum(v) / len(v):.2f}" if len(v) == len(results["tasks"]) else "–" for v in sums.values()) + " |")
    return lines


def changed_table(results, keys):
    """The dev rows each compressed model changed against the base, per classification task, with the sign test."""
    rows = [row for row in results["tasks"] if any(row["models"].get(k, {}).get("changed") for k in keys)]
    if not rows:
        return []
    lines = ["", "## Dev rows the compressed models changed", "",
             "Rows the base got right and the compressed model wrong (✗), and the reverse (✓), as `infer.py` deploys "
             "it; p: two-sided exact sign test on those rows, the chance of a split at least this uneven if each "
             "change went either way at random. p above 0.05: the change is within what chance gives on this dev "
             "set. (STS-B is a regression: no rows to count.)", "",
             "| task | dev rows | " + " | ".join(LABELS[k] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in rows:
        cells = []
        for k in keys:
            c = row["models"].get(k, {}).get("changed")
            cells.append(f"{c['to_wrong']} ✗, {c['to_right']} ✓ (p {c['p']:.2f})" if c else "–")
        n = next(row["models"][k]["changed"]["rows"] for k in keys if row["models"].get(k, {}).get("changed"))
        lines.append(f"| {row['task']} | {n} | " + " | ".join(cells) + " |")
    return lines


def seed_table(results):
    """PTQ's dev metric per calibration draw (Global.seed), per task: how far one run's result can move."""
    rows = [row for row in results["tasks"] if row["models"].get("ptq", {}).get("metrics_by_seed")]
    if not rows:
        return []
    seeds = sorted({s for row in rows for s in row["models"]["ptq"]["metrics_by_seed"]}, key=int)
    lines = ["", "## PTQ per calibration draw", "",
             "The shipped PTQ config run again with other `Global.seed` values, which draw other calibration "
             "batches (seed 0 is the run in the tables above); change against the base in points.", "",
             "| task | base | " + " | ".join(f"seed {s}" for s in seeds) + " | range |", "|---|---|" + "---|" * (len(seeds) + 1)]
    for row in rows:
        base = row["models"]["base"]["metrics"]["headline"]
        by_seed = row["models"]["ptq"]["metrics_by_seed"]
        values = [by_seed[s]["headline"] for s in seeds if s in by_seed]
        cells = [f"{100 * (by_seed[s]['headline'] - base):+.2f}" if s in by_seed else "–" for s in seeds]
        lines.append(f"| {row['task']} | {100 * base:.2f} | " + " | ".join(cells)
                     + f" | {100 * (max(values) - min(values)):.2f} |")
    return lines


def render(results):
    keys = ["base"] + [k for k in STRATEGIES if any(k in row["models"] for row in results["tasks"])]
    peers = [PEER] if any(PEER in row["models"] for row in results["tasks"]) else []
    lines = ["# Reproduction: MiniLM fine-tuned on GLUE, converted, compressed, deployed", "",
             common.provenance(results), ""]
    groups, tasks = runs(results), [row["task"] for row in results["tasks"]]
    if len(groups) > 1:  # each task's latency ratios were measured in one run, on one machine
        lines += [f"The rows come from {len(groups)} runs (the last one's command is above):", ""]
        lines += [f"- {', '.join(names)}: {describe_run(run, names)}" for run, names in groups] + [""]
    else:
        lines += [f"Each strategy: {training(results.get('settings'), tasks)}.", ""]
    lines += ["## Dev metric (through `infer.py`; compressed models run with `--int8`, oneDNN int8 linears)", ""]
    lines += dev_table(results, keys + peers, "paddle")
    partial = [t for t in ("qqp", "qnli", "mnli") if t in tasks]
    if partial:
        lines += ["", f"Train files here that are subsets of GLUE's: {', '.join(t.upper() for t in partial)} (see the "
                  "data folder's SOURCES.md). Every metric above scores the whole dev set."]
    mnli = next((row for row in results["tasks"] if row["task"] == "mnli"), None)
    if mnli and not any(k.startswith("dev_mismatched.") for k in mnli["models"]["base"]["metrics"]):
        lines.append("MNLI is scored on dev_matched only: the data folder has no dev_mismatched file.")
    sampled = {t: n for t, n in results["settings"].get("compression_eval_samples", {}).items() if t in tasks}
    if sampled:
        lines.append("The compressions of " + ", ".join(f"{t} ({n} rows)" for t, n in sampled.items())
                     + " evaluated a seeded dev sample during training (`Global.eval_samples`).")
    if peers:
        lines += ["", f"{PEER_LABEL}: the same fine-tuned model quantized by NNCF (`model_type=TRANSFORMER`, "
                  f"{peer.CALIBRATION_ROWS} training sentences) and run by OpenVINO in int8 "
                  "(`benchmarks/latency/peer.py`); its latency is in benchmarks/latency."]
    lines += [""] + goal_lines(results, keys[1:] + peers)
    lines += changed_table(results, keys[1:]) + seed_table(results)
    if any(row["models"].get(k, {}).get("metrics_openvino") for row in results["tasks"] for k in keys):
        import predictors

        bits = ("8-bit weights: this CPU has VNNI or AMX" if predictors.has_int8_dot_product(set(results["machine"]["isa"]))
                else "7-bit weights on a CPU without VNNI or AMX, as `--int8` does there")
        lines += ["", "## Dev metric as OpenVINO deploys the compressed models (`--backend openvino --int8`)", "",
                  f"The same int8 models in the peer runtime ({bits}). The base column is the fp32 model of the "
                  "table above.", ""]
        lines += dev_table(results, keys, "openvino") + [""] + goal_lines(results, keys[1:], "openvino")
    if any(row["models"].get("base", {}).get("perf") for row in results["tasks"]):  # none: an accuracy-only run
        lines += ["", "## Latency (`infer.py --perf`, CPU, sequence length 128, p50 ms per batch; × base)", "",
                  "| task | batch | " + " | ".join(LABELS[k] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
        windows = {row["task"]: {len(p.get("p50_ms_rounds", ()))  # its latency window's rounds; 0: timed before it
                                 for p in row["models"].get("base", {}).get("perf", {}).values()}
                   for row in results["tasks"]}
        apart = [task for task, rounds in windows.items() if 0 in rounds]
        for row in results["tasks"]:
            base = row["models"].get("base", {}).get("perf", {})
            for batch in sorted(base, key=int):
                cells = [row["task"] + (" §" if row["task"] in apart else ""), batch]
                for k in keys:
                    p = row["models"].get(k, {}).get("perf", {}).get(batch)
                    cells.append(f"{p['p50_ms']:.1f} ({base[batch]['p50_ms'] / p['p50_ms']:.2f}×)" if p else "–")
                lines.append("| " + " | ".join(cells) + " |")
        rounds = sorted(set().union(*windows.values()) - {0})
        if rounds:
            lines += ["", f"Each task's models timed in one window: {' or '.join(map(str, rounds))} rounds, each timing "
                      "every model once per batch size, each round starting one model later; a model's p50 is its "
                      "median round's."]
        if apart:
            lines += ["", f"§ {', '.join(apart)}: each model timed when its step ran, hours or days from the others "
                      "(before the latency window), so these ratios carry the machine's drift between them."]
    stages = [s for s in results["stages"] if any(s in row["seconds"] for row in results["tasks"])]
    lines += ["", "## Wall time per stage (s)", "", "| task | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    for row in results["tasks"]:
        shared = set(row.get("shared_cpu", ()))
        lines.append(f"| {row['task']} | " + " | ".join(
            f"{row['seconds'][s]:.0f}" + ("‡" if s in shared else "") if s in row["seconds"] else "–"
            for s in stages) + " |")
    if any(row.get("shared_cpu") for row in results["tasks"]):
        lines += ["", "‡ timed while another job shared the CPU (a row's `shared_cpu` in results.json, noted by "
                  "hand): an upper bound. The row's latencies were measured alone."]
    fixed = [row["task"] for row in results["tasks"] if any(m.get("mkl_avx2_on_amd") for m in row["models"].values())]
    older = [row["task"] for row in results["tasks"]
             if any(k in STRATEGIES and m.get("mkl_avx2_on_amd") is None for k, m in row["models"].items())]
    if fixed and older:
        lines += ["", f"run.py ran with MKL's AVX2 kernels (`workarounds.mkl_avx2_on_amd`) for "
                  f"{', '.join(fixed)}; its times for {', '.join(older)} predate that fix."]
    measured = [k for k in keys[1:] if any(row["models"].get(k, {}).get("peak_rss_mb") for row in results["tasks"])]
    if measured:
        lines += ["", "## Peak resident memory of run.py (GiB)", "", "| task | " + " | ".join(LABELS[k] for k in measured)
                  + " |", "|---|" + "---|" * len(measured)]
        for row in results["tasks"]:
            models = [row["models"].get(k, {}) for k in measured]
            lines.append(f"| {row['task']} | " + " | ".join(
                common.peak_gib(m) if m.get("peak_rss_mb") else "–" for m in models) + " |")
        if any(m.get("peak_rss_mb") and not m.get("peak_rss_own") for row in results["tasks"]
               for m in row["models"].values()):
            lines += ["", common.PEAK_UPPER_BOUND]
    lines.append("")
    return "\n".join(lines)


def headline(results, folder="reproduce"):
    """The README's short table: per strategy, the average dev metric before and after, the worst task,
    and the median speed-up and peak memory over the tasks; a link to benchmarks/<folder>/RESULTS.md."""
    import statistics

    tasks, groups = results["tasks"], runs(results)
    trained = any(k not in ("base", "ptq") for r in tasks for k in r["models"])  # PTQ alone does not train
    steps = {}  # label -> the step counts it trained in the rows' runs
    for run, _ in groups:
        for label, count in trained_steps(run.get("settings")).items():
            steps.setdefault(label, set()).add(count)
    counts = [" or ".join(map(str, sorted(c, key=lambda n: n or 0))) for c in steps.values()]
    trained_text = (f"each strategy trained {counts[0]} steps; " if len(set(counts)) == 1 else
                    "trained " + ", ".join(f"{label} {count} steps" for label, count in zip(steps, counts)) + "; ")
    machines = list(dict.fromkeys(f"{run['machine']['cpu']} ({', '.join(run['machine']['isa'])}), "
                                  f"{run['machine']['cores']} cores" for run, _ in groups))
    lines = [f"MiniLM fine-tuned on {tasks_count(len(tasks), 'GLUE ')} ({', '.join(r['task'] for r in tasks)}), "
             + (trained_text if trained and steps else "")
             + (f"rows from {len(groups)} runs (settings per row in RESULTS.md); " if len(groups) > 1 else "")
             + " and ".join(machines) + "; dev metric as `infer.py` deploys each model, latency p50 at "
             "sequence length 128:", "",
             "| strategy | average dev metric: base → compressed | worst task | speed-up, batch 1 / 32 (median) "
             "| peak memory of run.py |", "|---|---|---|---|---|"]
    for key in list(STRATEGIES) + [PEER]:
        rows = [r for r in tasks if key in r["models"]]
        if not rows:
            continue
        base = [r["models"]["base"]["metrics"]["headline"] for r in rows]
        after = [r["models"][key]["metrics"]["headline"] for r in rows]
        worst = min(rows, key=lambda r: r["models"][key]["metrics"]["headline"] - r["models"]["base"]["metrics"]["headline"])
        change = 100 * (worst["models"][key]["metrics"]["headline"] - worst["models"]["base"]["metrics"]["headline"])
        speedups = []
        for batch in sorted(rows[0]["models"]["base"]["perf"], key=int):
            ratios = [r["models"]["base"]["perf"][batch]["p50_ms"] / r["models"][key]["perf"][batch]["p50_ms"]
                      for r in rows if batch in r["models"][key]["perf"]]
            speedups.append(f"{statistics.median(ratios):.2f}×" if ratios else "–")
        peaks = [r["models"][key].get("peak_rss_mb") for r in rows]
        peak = f"{max(peaks) / 1024:.1f} GiB at most" if all(peaks) else "not measured"
        if all(peaks) and not all(r["models"][key].get("peak_rss_own") for r in rows):
            peak += " †"
        if key == PEER:
            speedups, peak = ["[benchmarks/latency](benchmarks/latency/RESULTS.md)"], "–"
        lines.append(f"| {LABELS[key]} ({tasks_count(len(rows))}) | {100 * sum(base) / len(base):.2f} → "
                     f"{100 * sum(after) / len(after):.2f} ({100 * (sum(after) - sum(base)) / len(base):+.2f}) | "
                     f"{worst['task']} {change:+.2f} | {' / '.join(speedups)} | {peak} |")
    hours = sum(sum(r["seconds"].values()) for r in tasks) / 3600  # every stage of every row, as each ran
    if any("†" in line for line in lines):
        lines += ["", common.PEAK_UPPER_BOUND]
    return "\n".join(lines) + f"\n\nEvery task, latency row and stage ({hours:.1f} hours of wall time in all, " \
        f"fine-tuning included): [benchmarks/{folder}/RESULTS.md](benchmarks/{folder}/RESULTS.md).\n"


def points(change):
    """A change of metric (a fraction) in points, signed where it is not 0.00."""
    change = round(100 * change, 2)
    return f"{change:+.2f}" if change else "0.00"


def task_table(results):
    """The README's table per task, under the headline's: per strategy the change against the base, the dev rows
    it turned wrong and right, and its batch-32 speed-up; PTQ's other calibration draws; the run of each row."""
    tasks, groups = results["tasks"], runs(results)
    keys = [k for k in list(STRATEGIES) + [PEER] if any(k in row["models"] for row in tasks)]
    draws = any(row["models"].get("ptq", {}).get("metrics_by_seed") for row in tasks)
    number = {task: i for i, (_, names) in enumerate(groups, 1) for task in names}
    lines = ["| task | base | " + " | ".join(LABELS[k] for k in keys) + (" | PTQ, other draws" if draws else "")
             + (" | run" if len(groups) > 1 else "") + " |"]
    lines.append("|---|---|" + "---|" * (len(keys) + draws + (len(groups) > 1)))
    beyond_chance = False
    for row in tasks:
        base = row["models"]["base"]
        cells = [f"{row['task']} ({row['metric']})", f"{100 * base['metrics']['headline']:.2f}"]
        for k in keys:
            model = row["models"].get(k)
            if not model:
                cells.append("–")
                continue
            cell = points(model["metrics"]["headline"] - base["metrics"]["headline"])
            changed = model.get("changed")
            if changed:
                star = "*" if changed["p"] < 0.05 else ""
                beyond_chance |= bool(star)
                cell += f" ({changed['to_wrong']} ✗ {changed['to_right']} ✓{star})"
            perf, base_perf = model["perf"].get("32"), base["perf"].get("32")
            if perf and base_perf:
                cell += f", {base_perf['p50_ms'] / perf['p50_ms']:.2f}×"
            cells.append(cell)
        if draws:
            by_seed = row["models"].get("ptq", {}).get("metrics_by_seed", {})
            cells.append(" / ".join(points(m["headline"] - base["metrics"]["headline"])
                                    for seed, m in sorted(by_seed.items(), key=lambda s: int(s[0])) if seed != "0")
                         or "–")
        if len(groups) > 1:
            cells.append(str(number[row["task"]]))
        lines.append("| " + " | ".join(cells) + " |")
    legend = ("Change against the base in points of dev metric as `infer.py` deploys each model; (✗ ✓): the dev "
              "rows it turned wrong and right" + (", * beyond chance by a sign test (p < 0.05)" if beyond_chance else "")
              + "".join(f"; {row['task'].upper()}, a regression, has no rows to count" for row in tasks
                        if glue.get_task(row["task"]).is_regression)
              + "; ×: its batch-32 speed-up over the base.")
    if draws:
        legend += " PTQ, other draws: PTQ's change with the other calibration seeds."
    if len(groups) > 1:
        # each run's overrides of today's configs; the legend names the ones not all runs share
        sets = [{(k, s) for k, v in (run.get("settings") or {}).get("strategies", {}).items() for s in v.get("set", ())
                 if not shipped_now(k, s, tasks)} for run, tasks in groups]

        def own_sets(own):
            return "".join(f", {LABELS[k]} " + " ".join(f"`{s}`" for _, s in group)
                           for k, group in itertools.groupby(sorted(own), key=lambda ks: ks[0]))

        legend += " Runs: " + "; ".join(
            f"{i}: {run['machine']['cpu']}, "
            + (", ".join(f"{label} {n} steps" for label, n in trained_steps(run.get("settings")).items()) or "PTQ alone")
            + own_sets(own - set.intersection(*sets)) for i, ((run, _), own) in enumerate(zip(groups, sets), 1)) + "."
    return "\n".join(lines + ["", legend]) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_benchmark_args(parser, OUT_DIR)
    parser.add_argument("--tasks", nargs="+", type=glue.task_arg, default=list(glue.TASK_NAMES))
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    parser.add_argument("--train_iter", type=int, default=60, help="training steps of distill + QAT")
    parser.add_argument("--prune_train_iter", type=int, default=120,
                        help="training steps of the pruned model's distillation (prune + distill, then PTQ): 60 "
                             "left SST-2's pruned model 1.15-1.38 points below its base, 120 0.23-0.34, QNLI's 0.02 "
                             "(benchmarks/train_iter)")
    parser.add_argument("--ptq_seeds", type=int, nargs="*", default=[1, 2],
                        help="PTQ alone again with these Global.seed values (other calibration batches), dev metric "
                             "only: the spread of one run's result (default: %(default)s; none: --ptq_seeds)")
    parser.add_argument("--set", action="append", default=[], metavar="STRATEGY:SECTION.KEY=VALUE",
                        help="one more override of one strategy's shipped config, as run.py --set takes it, e.g. "
                             "ptq:QuantPost.smooth_alpha=0.9 (repeatable; the report lists it with the strategy's "
                             "other overrides)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--perf_steps", type=int, nargs="+", default=[100, 20])
    parser.add_argument("--perf_rounds", type=int, default=3,
                        help="rounds of the latency window: each times every model of the task once per batch size "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    if len(args.batch_sizes) != len(args.perf_steps):
        parser.error("--perf_steps needs one count per --batch_sizes entry")
    if min(args.train_iter, args.prune_train_iter, args.perf_rounds) < 1:
        parser.error("--train_iter, --prune_train_iter and --perf_rounds must be 1 or more")
    sets = {key: [] for key in STRATEGIES}
    for value in args.set:
        key, _, override = value.partition(":")
        if key not in sets or "=" not in override or "." not in override.split("=")[0]:
            parser.error(f"--set {value!r}: give STRATEGY:SECTION.KEY=VALUE, STRATEGY one of {', '.join(sets)}")
        sets[key].append(override)
    args.set = sets
    return args


def main(argv=None):
    args = parse_args(argv)

    def measure(results, save):
        from tqdm import tqdm

        found = os.path.join(args.save_dir, "results.json")
        previous = common.read_results(args.save_dir) if os.path.isfile(found) else None
        results.update(settings={"seq": SEQ, "train_iter": args.train_iter, "prune_train_iter": args.prune_train_iter,
                                 "finetune": FINETUNE, "ptq_seeds": args.ptq_seeds,
                                 "compression_eval_samples": EVAL_SAMPLES,
                                 "strategies": {k: {**STRATEGIES[k], "set": STRATEGIES[k]["set"] + args.set[k]}
                                                for k in args.strategies}})
        rows, run = [], run_of(results)
        for task in tqdm(args.tasks, desc="tasks"):
            rows.append(summarize(task, run_task(task, args), os.path.join(args.work_dir, task)))
            results["tasks"] = merge_rows(previous, rows, run)
            results["stages"] = list(dict.fromkeys(s for row in results["tasks"] for s in row["seconds"]))
            save()

    return common.benchmark_main(args, "benchmarks/reproduce.py", argv, measure, render)


if __name__ == "__main__":
    cli.cli(main)
