"""What every script here shares: one-line errors, logging, signals, atomic JSON, quiet progress bars.

    import cli                      # first: loads the system zlib (see _preload_system_zlib)
    def main(argv=None): ...        # raise cli.InputError("what is wrong and what to do")
    if __name__ == "__main__":
        cli.cli(main)               # error: ... on one line, exit status 2
"""
import contextlib
import ctypes
import ctypes.util


def _preload_system_zlib():
    # paddle 2.6's libpaddle.so exports its bundled zlib 1.2.8; loading the system libz
    # globally first keeps zlib users (gzip, Cython 3.1 modules) off it. PaddlePaddle/Paddle#70538
    ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1", mode=ctypes.RTLD_GLOBAL)


_preload_system_zlib()

import json  # noqa: E402  (the zlib preload above must run before anything loads paddle)
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

# Paddle's C++ INFO lines ("New Executor is Running.", one per program run) say nothing about the
# run; glog reads this when libpaddle loads, so it must be set before anything imports paddle.
os.environ.setdefault("GLOG_minloglevel", "1")  # warnings and errors still show

if not sys.stderr.isatty():
    # Progress bars in a log file: tqdm redraws every 0.1 s with a carriage return, thousands of
    # fragments on one line. Off a terminal, redraw at most every 30 s. tqdm reads TQDM_* when it
    # is imported, so this holds for Paddle's and PaddleSlim's bars too, as long as this module
    # comes first (every script imports it, or glue, before anything else).
    os.environ.setdefault("TQDM_MININTERVAL", "30")


class _Lines:
    """sys.stderr off a terminal: each progress-bar redraw a line of its own, no blank ones."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = text.replace("\r", "\n")
        lines = [line for line in text.split("\n") if line.strip()]
        if lines:
            self.stream.write("\n".join(lines) + "\n")
        return len(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class InputError(ValueError):
    """Bad input from the user (flags, config, files): the CLI prints it as one line."""


class _DropMessages(logging.Filter):
    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix

    def filter(self, record):
        return not str(record.msg).startswith(self.prefix)


def quiet_third_party():
    """Drop the pinned libraries' messages that say nothing about the run, where they are raised.

    - "pkg_resources is deprecated" (paddleslim/common/load_model.py imports it) and "Setuptools
      is replacing distutils" (setuptools' _distutils_hack): about the libraries' packaging;
    - "full_graph=False don't support input_spec" (paddle/jit/dy2static/program_translator.py):
      X2Paddle's trace passes an input_spec Paddle then ignores, as intended;
    - "`loss_type=None` was set in the config but it is unrecognized" (transformers'
      modeling_utils, loss_function): BERT configs name no loss type; nothing here uses it.
    """
    import warnings

    for message in ("pkg_resources is deprecated", "Setuptools is replacing distutils",
                    "full_graph=False don't support input_spec"):
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    transformers_logger = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _DropMessages) for f in transformers_logger.filters):  # once per process
        transformers_logger.addFilter(_DropMessages("`loss_type=None`"))


def setup_logging(level=logging.INFO):
    """Configure logging from a script's main(): one console handler, whatever an import installed,
    and no third-party noise (quiet_third_party).

    File handlers stay: a driver that calls other scripts' main() (benchmarks/reproduce.py) keeps
    its per-task log file when they set up logging in turn.
    """
    quiet_third_party()
    files = [h for h in logging.root.handlers if isinstance(h, logging.FileHandler)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for handler in files:
        logging.root.addHandler(handler)


def write_json(path, obj):
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: unwinds like Ctrl-C, so every `finally` removes what the script made."""


_HELD = []  # one entry per open signals_held block; a signal that came meanwhile waits in _PENDING
_PENDING = []


def _interrupt(signum, frame):
    if _HELD:
        _PENDING.append(signum)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_held(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold SIGINT/SIGTERM back until the block ends (they are delivered then), so it is never cut short.

    Two locks, as either alone leaks: the signal mask keeps a default handler (a caller that
    imported main(), without cli()) from raising inside the block, but it holds only in this
    thread, and the kernel hands a process-directed signal to any thread that does not block it
    (Paddle's and tqdm's threads); Python then runs _interrupt in the main thread anyway, between
    any two bytecodes, so _interrupt itself defers while a block is open and the exit re-raises.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    _HELD.append(True)
    pending = []
    try:
        yield
    finally:
        _HELD.pop()
        if not _HELD:
            pending, _PENDING[:] = list(_PENDING), []
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a signal the mask held is delivered here
    if pending:  # the block ended normally: the signal that came during it stops the script now
        raise Interrupted(pending[0])


_TAKE_SIGNALS = []  # [True] once cli() runs: a script, not a caller that imported main()


def take_signals():
    """Make SIGINT and SIGTERM raise Interrupted again, after an import that changed them.

    `import paddle` installs C++ handlers (on SIGTERM: "FatalError: Termination signal", abort,
    no `finally` runs); `import paddlenlp` then calls paddle.disable_signal_handler(), which
    resets SIGTERM to the default, a silent kill (paddlenlp/__init__.py). Call this right after
    either import; it does nothing unless cli() runs the script.
    """
    if _TAKE_SIGNALS:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _interrupt)


def cli(main):
    """Run a script's main(); user errors end as one 'error: ...' line and exit status 2.

    SIGTERM is handled as SIGINT: the script cleans up its work folders, its output is left as it
    was (or, when the signal came while publishing, complete) and it exits with 128 + the signal.
    """
    import paddle  # noqa: F401  (before take_signals: see there)

    if not sys.stderr.isatty():
        sys.stderr = _Lines(sys.stderr)
    _TAKE_SIGNALS.append(True)
    take_signals()
    try:
        main()
    except (InputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as e:
        signum = e.args[0] if isinstance(e, Interrupted) else signal.SIGINT
        print(f"error: stopped by {signal.Signals(signum).name}: work folders removed; an output folder holds its "
              "old or its new result, whole", file=sys.stderr)
        raise SystemExit(128 + signum) from None
