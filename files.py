"""The files the scripts read and write: input checks, and output folders built aside and swapped in.

Inputs are checked before any loader runs, so a bad one ends in one line and a local path is
never handed to a loader that would look it up on a model hub:

    config = files.hf_model_folder("./bert-cola")     # None for a hub id, else the parsed config.json

Every script that writes a folder (convert.py, run.py, benchmarks/finetune.py) goes through here:

    save_dir = files.check_save_dir(args.save_dir, inputs=[model_dir], overwrite=args.overwrite)
    with files.building(save_dir, "convert", args.overwrite) as work:
        ...write the result into work.out, scratch files anywhere under work.root...
    # the finished work.out now is save_dir; an exception or a signal left save_dir as it was

The guarantees, which the README's "Safety" paragraph states:
- a save_dir that is, contains or lies inside an input, or is (or contains) the working folder,
  the home folder or `/`, is refused before any work starts; so are a symlink, a file, a path
  under a file and the empty string;
- a non-empty save_dir is replaced only with --overwrite, and only when one of these scripts
  wrote it (it holds one of OWN_MARKERS);
- the result is built in a hidden work folder beside save_dir and swapped in by one rename
  (renameat2 RENAME_EXCHANGE where the kernel has it): at every instant the old or the new
  result is whole at save_dir; SIGINT and SIGTERM are held back for the few renames;
- nothing is deleted that the script did not create: the old result is removed only after the
  swap, a file that appears in an empty save_dir while the script works stops the publish;
- work folders carry the owner's pid; the next run removes those whose process is gone.
"""
import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

import cli
from cli import InputError

# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------
# What a HF checkpoint folder holds its weights in (one file, or an index of shards).
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                   "pytorch_model.bin.index.json")
# A hub id is `name` or `owner/name`, letters, digits, '-', '_' and '.' only (huggingface_hub's rule).
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def is_local(name_or_path):
    """True when `name_or_path` names a place on this machine rather than a hub id.

    Anything that exists, or that no hub id could be (absolute, ./ or ../, ~, two or more
    slashes, a trailing slash), is local; loaders are never given such a path to look up online.
    """
    text = str(name_or_path)
    return os.path.exists(text) or not HUB_ID.match(text)


def read_json_object(path, what):
    """The JSON object (dict) in `path`; one-line InputError for a missing, non-UTF-8, invalid or non-object file."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{what}: {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}: {path} is not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        raise InputError(f"{what}: {path} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(f"{what}: {path} must hold a JSON object, it holds {type(value).__name__} {value!r:.40}")
    return value


def hf_model_folder(name_or_path, flag="--model_name_or_path", need_weights=True):
    """Check a local HuggingFace checkpoint folder before transformers sees it.

    Args:
        name_or_path: a folder, or a hub id (then nothing is checked: online users load from the hub).
        flag: the flag's name, for the messages.
        need_weights: the folder must hold weights too (not only a tokenizer and config).
    Returns:
        config.json's object for a local folder, None for a hub id.
    Raises:
        InputError: missing folder, no config.json, a config.json that is not an object, no weights.
    """
    if not is_local(name_or_path):
        return None
    if not os.path.isdir(name_or_path):
        raise InputError(f"{flag} {name_or_path!r}: model folder does not exist: pass a folder holding "
                         "config.json and the weights of a fine-tuned BERT, or a hub id when online")
    config = read_json_object(os.path.join(name_or_path, "config.json"), f"{flag} {name_or_path!r}")
    if need_weights and not any(os.path.isfile(os.path.join(name_or_path, f)) for f in HF_WEIGHT_FILES):
        raise InputError(f"{flag} {name_or_path!r} has config.json but no weights (none of "
                         f"{', '.join(HF_WEIGHT_FILES)}): pass the folder save_pretrained wrote")
    return config


QUANT_OPS = ("quantize_linear", "dequantize_linear", "fake_quantize_dequantize_abs_max",
             "fake_channel_wise_quantize_dequantize_abs_max", "fake_quantize_dequantize_moving_average_abs_max")


@dataclass
class PaddleModel:
    """What the scripts need to know of a Paddle inference model, read from its .pdmodel alone.

    feeds: feed names in column order; feed_shapes: {name: dims} (-1 is dynamic); vocab_size: rows of
    the first embedding table (None without one); quantized: the graph holds quantize/dequantize ops.
    """

    feeds: list
    feed_shapes: dict
    vocab_size: int
    quantized: bool

    @property
    def fixed_seq_length(self):
        """The sequence length a trace conversion fixed, or None when it is dynamic."""
        fixed = {shape[1] for shape in self.feed_shapes.values() if shape and len(shape) == 2 and shape[1] > 0}
        return fixed.pop() if len(fixed) == 1 else None


def read_program(model_file, what="model"):
    """The ProgramDesc in a .pdmodel, weights not loaded; InputError when it is missing or not a Paddle program."""
    from google.protobuf.message import DecodeError
    from paddle.base.proto import framework_pb2

    if not os.path.isfile(model_file):
        raise InputError(f"{what}: {model_file} does not exist")
    program = framework_pb2.ProgramDesc()
    with open(model_file, "rb") as f:
        data = f.read()
    try:
        program.ParseFromString(data)
    except DecodeError:
        program = None
    if program is None or not program.blocks:
        raise InputError(f"{what}: {model_file} is not a Paddle program (truncated or corrupt?): "
                         "convert or compress the model again")
    return program


def read_paddle_model(model_file, params_file=None, what="model"):
    """A PaddleModel from a .pdmodel; its .pdiparams, when given, must be there and not empty."""
    if params_file is not None and not os.path.isfile(params_file):
        raise InputError(f"{what}: {params_file} does not exist")
    if params_file is not None and os.path.getsize(params_file) == 0:
        raise InputError(f"{what}: {params_file} is empty: convert or compress the model again")
    block = read_program(model_file, what).blocks[0]
    shapes = {v.name: list(v.type.lod_tensor.tensor.dims) for v in block.vars if v.type.type == v.type.LOD_TENSOR}
    feeds, vocab = [], None
    for op in block.ops:
        if op.type == "feed":
            feeds.append((next(a.i for a in op.attrs if a.name == "col"), op.outputs[0].arguments[0]))
        elif vocab is None and op.type in ("lookup_table_v2", "lookup_table"):  # the word embeddings
            vocab = shapes[next(i.arguments[0] for i in op.inputs if i.parameter == "W")][0]
    names = [name for _, name in sorted(feeds)]
    return PaddleModel(feeds=names, feed_shapes={n: shapes.get(n) for n in names}, vocab_size=vocab,
                       quantized=any(op.type in QUANT_OPS for op in block.ops))


# ----------------------------------------------------------------------------------------
# Output folders
# ----------------------------------------------------------------------------------------
# A folder that holds one of these was written by convert.py, run.py, infer.py or finetune.py.
OWN_MARKERS = ("convert.json", "results.json", "finetune.json")
OWNER_FILE = ".owner.json"  # inside each work folder: who made it
WORK_NAME = re.compile(r"^\.(?P<kind>[a-z]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def _contains(outer, inner):
    """True when real path `inner` is `outer` or lies below it."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_save_dir(save_dir, inputs=(), overwrite=False, flag="--save_dir", replace=True):
    """Refuse an output folder this script must not write or replace; returns its absolute path.

    Args:
        save_dir: the folder the user named.
        inputs: paths the script reads (model folder, data folder, config file); None entries skip.
        overwrite: the user passed --overwrite (a non-empty folder of ours may then be replaced).
        flag: the flag's name, for the messages.
        replace: the script replaces the whole folder (building); False when it only adds its
            results.json to it, so that any existing folder outside the inputs will do.
    Raises:
        InputError: one line saying what is wrong and what to do.
    """
    if not save_dir or not str(save_dir).strip():
        raise InputError(f"{flag} is empty: name an output folder, e.g. {flag} output/model")
    path = os.path.abspath(save_dir)
    if os.path.islink(save_dir):
        raise InputError(f"{flag} {save_dir!r} is a symlink: pass the folder it points to, or another path")
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{flag} {save_dir!r} is a file: choose a folder")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"{flag} {save_dir!r} lies under {parent!r}, a file: choose a folder elsewhere")
    real = os.path.realpath(path)
    protected_folders = (("the current folder", os.getcwd()), ("your home folder", os.path.expanduser("~")),
                         ("the root folder", os.sep))
    for name, protected in protected_folders if replace else ():
        if _contains(real, os.path.realpath(protected)):
            raise InputError(f"{flag} {save_dir!r} is or contains {name}, which an output must never replace: "
                             "name a new folder, e.g. output/model")
    for given in inputs:
        if not given or not os.path.exists(given):
            continue
        source = os.path.realpath(given)
        if _contains(source, real) or _contains(real, source):
            raise InputError(f"{flag} {save_dir!r} is, contains or lies inside the input {given!r}: "
                             "these scripts never write over their input; choose a folder outside it")
    if replace and os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise InputError(f"{flag} {save_dir!r} is not empty: choose another folder or pass --overwrite")
        _check_ours(path, save_dir, flag)
    return path


def _check_ours(path, save_dir, flag):
    if not any(os.path.isfile(os.path.join(path, m)) for m in OWN_MARKERS):
        raise InputError(f"{flag} {save_dir!r} is not empty and was not written by these scripts (it has none of "
                         f"{', '.join(OWN_MARKERS)}): --overwrite replaces only their own output; "
                         "choose another folder")


# ----------------------------------------------------------------------------------------
# Work folders
# ----------------------------------------------------------------------------------------
@dataclass
class Work:
    """A private folder beside save_dir: `out` becomes save_dir, the rest of `root` is scratch."""

    root: str
    out: str


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_work(parent):
    """Delete work folders in `parent` that these scripts made and whose process has ended.

    A folder counts as ours only when its name has the work-folder form and it holds OWNER_FILE
    naming the same pid; a live pid (even a reused one) keeps it.
    """
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = WORK_NAME.match(name)
        folder = os.path.join(parent, name)
        if not match or os.path.islink(folder) or not os.path.isdir(folder):
            continue
        try:
            with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as f:
                owner = json.load(f)
        except (OSError, ValueError):
            continue
        pid = int(match["pid"])
        if not isinstance(owner, dict) or owner.get("pid") != pid or _alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def building(save_dir, kind, overwrite=False, rank=0, world_size=1):
    """Build a result aside and publish it as save_dir when the block ends without an error.

    Args:
        save_dir: absolute path from check_save_dir.
        kind: short lower-case name of the script ('convert', 'run', 'finetune'): names the work folder.
        overwrite: as given to check_save_dir; checked again when publishing.
        rank, world_size: under paddle.distributed.launch (world_size > 1) the processes of one job
            share one work folder, named after the launcher (their common parent process); rank 0
            publishes and removes it, the others only work in it.
    Yields:
        Work(root, out): write the result into `out` (it exists and is empty).
    """
    parent = os.path.dirname(save_dir)
    os.makedirs(parent, exist_ok=True)
    remove_stale_work(parent)
    owner = os.getpid() if world_size == 1 else os.getppid()
    root = None
    try:
        with cli.signals_held():  # a signal now would leave a folder that no `finally` knows of
            if world_size == 1:
                root = tempfile.mkdtemp(prefix=f".{kind}-{owner}-", dir=parent)
            else:
                root = os.path.join(parent, f".{kind}-{owner}-ranks")
                os.makedirs(root, exist_ok=True)
            # atomically: a SIGKILL between creating the file and writing it would leave a folder
            # remove_stale_work cannot tell is ours
            cli.write_json(os.path.join(root, OWNER_FILE), {"pid": owner, "kind": kind, "save_dir": save_dir})
            out = os.path.join(root, "out")
            os.makedirs(out, exist_ok=True)
        yield Work(root, out)
        if rank != 0:
            return
        with cli.signals_held():
            publish(out, save_dir, overwrite)
            shutil.rmtree(root)  # holds the old result after a swap
    finally:
        if root is not None and rank == 0:
            shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# Publishing
# ----------------------------------------------------------------------------------------
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a, b):
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False  # a filesystem or kernel without it
    raise OSError(err, os.strerror(err), b)


def publish(out, save_dir, overwrite):
    """Move the finished folder `out` to save_dir; an old save_dir of ours ends up in the work folder.

    Without a save_dir (or with an empty one, which rename replaces) this is one rename. A
    non-empty one must be ours and --overwrite given (checked again now: it may have changed
    since the start); it is swapped with `out` in one step, or, where the kernel cannot swap,
    renamed aside into the work folder and `out` renamed in, one rename after the other.
    """
    if os.path.islink(save_dir) or (os.path.exists(save_dir) and not os.path.isdir(save_dir)):
        raise InputError(f"{save_dir!r} became a file or symlink while this run worked; nothing was replaced")
    if not (os.path.isdir(save_dir) and os.listdir(save_dir)):
        try:
            os.rename(out, save_dir)  # replaces an empty folder; fails on one that was just filled
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if not overwrite:
        raise InputError(f"{save_dir!r} got files while this run worked and --overwrite was not given: "
                         "nothing was replaced; run again with another folder")
    _check_ours(save_dir, save_dir, "save_dir")
    if exchange(out, save_dir):
        return
    os.rename(save_dir, out + ".old")  # inside the work folder, which is removed after publishing
    os.rename(out, save_dir)
