"""The safety guarantees: inputs never written, outputs replaced whole or not at all, no shell,
local paths never sent to a network, one `error:` line for every bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

import convert
import files
import cli
import glue
import run
from conftest import ROOT, SEQ, folder_digest, write_sst2_fixture


def write_yaml(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)


def base_config(model_dir, data_dir=None, **sections):
    return {"Global": {"model_dir": model_dir, "task_name": "sst-2", "batch_size": 4, "max_seq_length": SEQ,
                       "data_dir": data_dir}, **sections}


def hidden(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


# ---------------------------------------------------------------------------------- which folders
@pytest.fixture
def model_copy(tiny_bert, tmp_path):
    """A tiny HF model in tmp_path/models/bert, with a sibling file the user keeps beside it."""
    folder = tmp_path / "models" / "bert"
    shutil.copytree(tiny_bert, folder)
    (tmp_path / "models" / "notes.txt").write_text("mine")
    return str(folder)


@pytest.mark.parametrize("target, match", [
    ("{parent}", "contains or lies inside the input"),      # the folder holding the input
    ("{model}", "contains or lies inside the input"),
    ("{model}/sub", "contains or lies inside the input"),
    (".", "is or contains the current folder"),
    ("{tmp}", "is or contains the current folder"),          # an ancestor of the cwd
    ("~", "is or contains your home folder"),
    ("/", "is or contains"),
    ("", "is empty"),
])
def test_convert_refuses_folders_it_must_not_replace(model_copy, tmp_path, monkeypatch, target, match):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "keep.txt").write_text("mine")
    save_dir = os.path.expanduser(target.format(parent=os.path.dirname(model_copy), model=model_copy, tmp=tmp_path))
    before = folder_digest(tmp_path)
    with pytest.raises(cli.InputError, match=match):
        convert.main(["--model_name_or_path", model_copy, "--save_dir", save_dir, "--overwrite"])
    assert folder_digest(tmp_path) == before


def test_run_refuses_the_folder_holding_its_input(trace_model, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(trace_model, models / "base")
    config = write_yaml(tmp_path / "c.yaml", base_config(str(models / "base"), QuantPost={}))
    before = folder_digest(tmp_path)
    for save_dir in (str(models), str(models / "base"), str(tmp_path)):
        with pytest.raises(cli.InputError, match="contains or lies inside the input"):
            run.main(["--config_path", config, "--save_dir", save_dir, "--overwrite"])
    assert folder_digest(tmp_path) == before


@pytest.mark.parametrize("kind", ["symlink", "file", "under_file"])
def test_odd_save_dirs_refused_before_work(model_copy, tmp_path, kind):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "afile").write_text("x")
    save_dir = {"symlink": tmp_path / "link", "file": tmp_path / "afile", "under_file": tmp_path / "afile" / "out"}[kind]
    if kind == "symlink":
        os.symlink(target, save_dir)
    match = {"symlink": "is a symlink", "file": "is a file", "under_file": "lies under .*afile.*a file"}[kind]
    before = folder_digest(tmp_path)
    with pytest.raises(cli.InputError, match=match):
        convert.main(["--model_name_or_path", model_copy, "--save_dir", str(save_dir)])
    assert folder_digest(tmp_path) == before


def test_overwrite_replaces_only_our_own_output(model_copy, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(cli.InputError, match="not written by these scripts"):
        convert.main(["--model_name_or_path", model_copy, "--save_dir", str(theirs), "--overwrite"])
    assert os.listdir(theirs) == ["thesis.tex"]

    ours = tmp_path / "ours"
    convert.main(["--model_name_or_path", model_copy, "--max_seq_length", "8", "--save_dir", str(ours)])
    (ours / "extra.txt").write_text("old run")
    convert.main(["--model_name_or_path", model_copy, "--max_seq_length", "8", "--save_dir", str(ours),
                  "--overwrite"])
    assert "extra.txt" not in os.listdir(ours) and "convert.json" in os.listdir(ours)
    assert hidden(tmp_path) == []


# ---------------------------------------------------------------------------------- publishing
def test_files_that_appear_during_a_run_are_never_deleted(tmp_path):
    save_dir = files.check_save_dir(str(tmp_path / "out"))
    os.mkdir(save_dir)  # empty: allowed without --overwrite
    with pytest.raises(cli.InputError, match="got files while this run worked"):
        with files.building(save_dir, "test") as work:
            open(os.path.join(work.out, "results.json"), "w").close()
            with open(os.path.join(save_dir, "user.txt"), "w") as f:  # someone else writes meanwhile
                f.write("theirs")
    assert os.listdir(save_dir) == ["user.txt"] and hidden(tmp_path) == []


@pytest.mark.parametrize("can_exchange", [True, False], ids=["renameat2", "two-renames"])
def test_publish_swaps_old_for_new(tmp_path, monkeypatch, can_exchange):
    if not can_exchange:
        monkeypatch.setattr(files, "exchange", lambda a, b: False)
    save_dir = str(tmp_path / "out")
    for generation in ("old", "new"):
        with files.building(save_dir, "test", overwrite=True) as work:
            with open(os.path.join(work.out, "results.json"), "w") as f:
                f.write(generation)
    with open(os.path.join(save_dir, "results.json")) as f:
        assert f.read() == "new"
    assert os.listdir(save_dir) == ["results.json"] and hidden(tmp_path) == []


def test_stale_work_folders_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    made = {}
    for name, owner in ((f".convert-{dead}-abc", {"pid": int(dead)}),     # ours, process gone: removed
                        (f".run-{os.getpid()}-abc", {"pid": os.getpid()}),  # ours, alive: kept
                        (f".run-{dead}-nomark", None),                      # no owner file: not provably ours
                        (".userstuff", None)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.pdiparams").write_text("x")
        if owner:
            (folder / files.OWNER_FILE).write_text(json.dumps(owner))
        made[name] = folder
    with files.building(str(tmp_path / "out"), "test") as work:
        open(os.path.join(work.out, "results.json"), "w").close()
    assert hidden(tmp_path) == sorted([f".run-{os.getpid()}-abc", f".run-{dead}-nomark", ".userstuff"])


CONVERT_SCRIPT = os.path.join(ROOT, "convert.py")


def start_convert(model_dir, save_dir, extra=()):
    return subprocess.Popen([sys.executable, CONVERT_SCRIPT, "--model_name_or_path", model_dir, "--max_seq_length",
                             "8", "--save_dir", save_dir, "--overwrite", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_for(predicate, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def in_work_folder(parent, name):
    """A predicate: some work folder in `parent` holds `name` (a path below it)."""
    def found():
        return any(os.path.exists(os.path.join(parent, d, name)) for d in os.listdir(parent)
                   if d.startswith(".convert-"))
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("moment", ["early", "late"])
def test_interrupted_overwrite_keeps_the_old_model(model_copy, tmp_path, signum, moment):
    """A real signal to a real convert.py replacing an older output, as soon as its work folder
    appears or once the new model is saved in it: the input and the old output are untouched, the
    exit status is 128 + the signal, one error line, and no work folder is left behind."""
    save_dir = str(tmp_path / "out")
    convert.main(["--model_name_or_path", model_copy, "--max_seq_length", "8", "--save_dir", save_dir])
    old, source = folder_digest(save_dir), folder_digest(model_copy)
    proc = start_convert(model_copy, save_dir)
    assert wait_for(in_work_folder(str(tmp_path), "" if moment == "early" else "out/model.pdmodel"), proc), \
        proc.communicate()[1][-2000:]
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(f"error: stopped by {signal.Signals(signum).name}")
    assert "Traceback" not in err
    assert folder_digest(model_copy) == source and folder_digest(save_dir) == old
    assert hidden(tmp_path) == []


PUBLISH_LOOP = """
import os, sys
sys.path.insert(0, sys.argv[2])
import cli, files

def main():
    for generation in range(1000):
        with files.building(sys.argv[1], "convert", overwrite=True) as work:
            for i in range(3000):  # many files: removing the old result takes a while
                with open(os.path.join(work.out, f"part{i}"), "w") as f:
                    f.write(str(generation))
            with open(os.path.join(work.out, "convert.json"), "w") as f:
                f.write(str(generation))
        print(generation, flush=True)

cli.cli(main)
"""


def whole(save_dir):
    """The generation save_dir holds, checking that every file belongs to it."""
    with open(os.path.join(save_dir, "convert.json")) as f:
        generation = f.read()
    parts = set()
    for i in range(3000):
        with open(os.path.join(save_dir, f"part{i}")) as f:
            parts.add(f.read())
    assert parts == {generation}, f"a mixed folder: {len(parts)} generations"
    return int(generation)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_publishing_completes_the_swap(tmp_path, signum):
    """The signal lands while the old result is swapped out and removed: the swap finishes, save_dir
    holds one whole generation, and the old one's folder is gone before the process exits."""
    save_dir = str(tmp_path / "out")
    proc = subprocess.Popen([sys.executable, "-c", PUBLISH_LOOP, save_dir, ROOT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()  # generation 0 is published: every later publish replaces a folder

    def swapping():  # the old result sits in the work folder, partly removed already: some files, not part0
        for d in os.listdir(tmp_path):  # (a new result is written part0 first: an empty "out" is one starting)
            try:
                names = os.listdir(os.path.join(tmp_path, d, "out")) if d.startswith(".convert-") else []
            except FileNotFoundError:
                continue
            if names and "part0" not in names:
                return True
        return False
    assert wait_for(swapping, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert whole(save_dir) >= 1 and hidden(tmp_path) == []


def test_signal_another_thread_takes_waits_for_the_held_block():
    """The kernel hands a process-directed signal to any thread that does not block it (Paddle's
    and tqdm's threads), and Python runs the handler in the main thread between two bytecodes,
    whatever its signal mask: inside cli.signals_held the handler must wait for the block's end."""
    import threading

    go = threading.Event()
    helper = threading.Thread(target=lambda: (go.wait(), signal.pthread_kill(threading.get_ident(), signal.SIGINT)))
    helper.start()  # before the block: its signal mask is not the block's
    previous = signal.signal(signal.SIGINT, cli._interrupt)
    finished = []
    try:
        with pytest.raises(cli.Interrupted):
            with cli.signals_held():
                go.set()
                helper.join()
                for _ in range(100000):  # bytecodes: the handler gets its chance here
                    pass
                finished.append(True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert finished == [True]


def test_killed_run_leaves_a_work_folder_the_next_run_removes(model_copy, tmp_path):
    proc = start_convert(model_copy, str(tmp_path / "a"))
    assert wait_for(in_work_folder(str(tmp_path), files.OWNER_FILE), proc)
    proc.kill()  # SIGKILL cannot be handled: the folder stays
    proc.communicate()
    assert len(hidden(tmp_path)) == 1
    convert.main(["--model_name_or_path", model_copy, "--max_seq_length", "8", "--save_dir", str(tmp_path / "b")])
    assert hidden(tmp_path) == []


# ---------------------------------------------------------------------------------- bad inputs: models
@pytest.mark.parametrize("damage, match", [
    ("config_null", "must hold a JSON object, it holds NoneType"),
    ("config_list", "must hold a JSON object, it holds list"),
    ("config_binary", "is not UTF-8 text"),
    ("no_weights", "has config.json but no weights"),
    ("no_config", "config.json does not exist"),
    ("truncated_safetensors", "cannot load the weights .*truncated or corrupt"),
    ("truncated_bin", "cannot load the weights .*truncated or corrupt"),
])
def test_broken_hf_folders(tiny_bert, tmp_path, damage, match):
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    weights = folder / "model.safetensors"
    if damage == "config_null":
        (folder / "config.json").write_text("null")
    elif damage == "config_list":
        (folder / "config.json").write_text("[1, 2]")
    elif damage == "config_binary":
        (folder / "config.json").write_bytes(b"\xff\xfe{")
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "no_config":
        (folder / "config.json").unlink()
    elif damage == "truncated_safetensors":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        import torch
        from safetensors.torch import load_file

        torch.save(load_file(weights), folder / "pytorch_model.bin")
        weights.unlink()
        data = (folder / "pytorch_model.bin").read_bytes()
        (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(cli.InputError, match=match):
        convert.main(["--model_name_or_path", str(folder), "--save_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_folder_named_like_a_model_type_is_not_guessed(tmp_path):
    empty = tmp_path / "empty"  # transformers reads "mpt" into the name
    empty.mkdir()
    with pytest.raises(cli.InputError, match="config.json does not exist"):
        convert.main(["--model_name_or_path", str(empty), "--save_dir", str(tmp_path / "out")])
    (empty / "config.json").write_text("{}")
    (empty / "model.safetensors").write_bytes(b"")
    with pytest.raises(cli.InputError, match="has no model_type in its config.json; supported: BERT-family"):
        convert.main(["--model_name_or_path", str(empty), "--save_dir", str(tmp_path / "out")])


@pytest.mark.parametrize("damage, match", [
    ("pdmodel", "is not a Paddle program"),
    ("empty_params", "is empty"),
    ("truncated_params", "cannot load"),
])
def test_broken_paddle_models(trace_model, tmp_path, damage, match):
    folder = tmp_path / "model"
    shutil.copytree(trace_model, folder)
    data_dir = write_sst2_fixture(tmp_path / "glue")
    target = folder / ("model.pdmodel" if damage == "pdmodel" else "model.pdiparams")
    data = target.read_bytes()
    target.write_bytes(b"" if damage == "empty_params" else data[: len(data) // 2])
    config = write_yaml(tmp_path / "c.yaml", base_config(str(folder), data_dir))
    with pytest.raises(cli.InputError, match=match):
        run.main(["--config_path", config, "--eval", "--save_dir", str(tmp_path / "res")])


# ---------------------------------------------------------------------------------- bad inputs: data and config
def test_non_utf8_tsv_and_nan_score(tmp_path):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    (folder / "dev.tsv").write_bytes(b"sentence\tlabel\ngood\t1\nbad \xff\xfe\t0\n")
    with pytest.raises(cli.InputError, match=r"dev.tsv:3: not UTF-8 text; save the file as UTF-8"):
        glue.read_split(str(tmp_path), "sst-2", "dev")
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "dev.tsv").write_text("sentence1\tsentence2\tscore\na\tb\t3.5\nc\td\tnan\n")
    with pytest.raises(cli.InputError, match=r"dev.tsv:3: score 'nan' is not a finite number"):
        glue.read_split(str(tmp_path), "sts-b", "dev")


@pytest.mark.parametrize("sections, match", [
    ({"QuantAware": {}, "TrainConfig": {"learning_rate": "fast"}}, "TrainConfig.learning_rate must be a number, got 'fast'"),
    ({"QuantAware": {}, "TrainConfig": {"train_iter": "many"}}, "TrainConfig.train_iter must be a positive integer, got 'many'"),
    ({"QuantAware": {}, "TrainConfig": {"train_iter": -3}}, "TrainConfig.train_iter must be a positive integer, got -3"),
    ({"QuantAware": {"use_pact": "yes"}, "TrainConfig": {}}, "QuantAware.use_pact must be true or false"),
    ({"QuantAware": {}, "TrainConfig": {"optimizer_builder": {"optimizer": {"type": "AdamW"}}}},
     "TrainConfig.optimizer_builder: AdamW needs weight_decay"),
    ({"QuantAware": {}, "TrainConfig": {"optimizer_builder": "adam"}}, "TrainConfig.optimizer_builder needs optimizer"),
])
def test_wrong_types_in_strategy_sections(trace_model, tmp_path, sections, match):
    path = write_yaml(tmp_path / "c.yaml", base_config(trace_model, **sections))
    with pytest.raises(cli.InputError, match=f"config {path}: {match}"):
        run.load_config(path)


def test_learning_rate_scheduler_is_still_accepted(trace_model, tmp_path):
    path = write_yaml(tmp_path / "c.yaml", base_config(trace_model, QuantAware={}, TrainConfig={
        "learning_rate": {"type": "CosineAnnealingDecay", "learning_rate": 2e-5, "T_max": 10}}))
    assert run.load_config(path)[1]["TrainConfig"]["learning_rate"]["T_max"] == 10


def test_config_and_set_errors(trace_model, tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"Global:\n  task_name: \xff\xfe\n")
    with pytest.raises(cli.InputError, match="is not UTF-8 text"):
        run.load_config(str(binary))
    path = write_yaml(tmp_path / "c.yaml", base_config(trace_model))
    with pytest.raises(cli.InputError, match="--set 'TrainConfig.train_iter=\\[1': the value is not valid YAML"):
        run.load_config(path, overrides=["TrainConfig.train_iter=[1"])
    with pytest.raises(cli.InputError, match=f"Global.max_seq_length 32: the model's sequence length is fixed at {SEQ}"):
        run.load_config(path, overrides=["Global.max_seq_length=32"])
    with pytest.raises(cli.InputError, match=f"Global.padding longest: the model's sequence length is fixed at {SEQ}"):
        run.load_config(path, overrides=["Global.padding=longest"])


# ---------------------------------------------------------------------------------- no network for local paths
def test_local_paths_never_reach_a_hub(trace_model, tmp_path, monkeypatch):
    import infer
    import transformers
    from paddlenlp.transformers import AutoTokenizer

    def no_network(*args, **kwargs):
        raise AssertionError(f"a loader was called with {args}")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", no_network)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_network)
    data_dir = write_sst2_fixture(tmp_path / "glue")
    argv = ["--task_name", "sst-2", "--device", "cpu", "--max_seq_length", str(SEQ), "--data_dir", data_dir,
            "--save_dir", str(tmp_path / "res")]
    with pytest.raises(cli.InputError, match="missing"):
        infer.main(argv + ["--model_path", str(tmp_path / "no_such_folder" / "model")])
    with pytest.raises(cli.InputError, match="has no vocab.txt"):
        infer.main(argv + ["--model_path", os.path.join(trace_model, "model"),
                           "--model_name_or_path", str(tmp_path / "glue")])
    for local in ("./absent", "a/b/c", str(tmp_path / "absent"), "~/absent"):
        assert files.is_local(local)
        with pytest.raises(cli.InputError, match="does not exist"):
            convert.load_bert_config(local)
    assert not files.is_local("bert-base-cased") and not files.is_local("google-bert/bert-base-cased")


def test_cli_one_line_for_a_bad_save_dir(model_copy, tmp_path):
    proc = subprocess.run([sys.executable, CONVERT_SCRIPT, "--model_name_or_path", model_copy, "--save_dir", ""],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "error" in line.lower()] == [
        "error: --save_dir is empty: name an output folder, e.g. --save_dir output/model"]


def test_sigterm_during_compression(trace_model, tmp_path):
    """SIGTERM while PaddleSlim works in run.py's work folder (its private model copy is there):
    the input is untouched, nothing is published and nothing hidden is left."""
    data_dir = write_sst2_fixture(tmp_path / "glue")
    config = write_yaml(tmp_path / "c.yaml", base_config(trace_model, data_dir, QuantPost={
        "quantize_op_types": ["matmul_v2"], "batch_size": 4, "batch_nums": 2}))
    source = folder_digest(trace_model)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--config_path", config, "--save_dir",
                             str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    private_copy = lambda: any(os.path.isfile(os.path.join(tmp_path, d, "model", "model.pdiparams"))  # noqa: E731
                               for d in os.listdir(tmp_path) if d.startswith(".run-"))
    assert wait_for(private_copy, proc), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and "FatalError" not in err
    assert folder_digest(trace_model) == source
    assert sorted(os.listdir(tmp_path)) == ["c.yaml", "glue"]
