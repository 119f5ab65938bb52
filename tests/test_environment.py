"""The pinned set imports in any order, and cli keeps zlib usable after `import paddle`."""
import subprocess
import sys

import pytest

from conftest import ROOT

LIBS = ["paddle", "paddleslim", "paddlenlp", "x2paddle", "torch", "transformers", "onnx"]


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.parametrize("order", [LIBS, LIBS[::-1], LIBS[2:] + LIBS[:2]], ids=["forward", "reverse", "rotated"])
def test_libraries_import_in_any_order(order):
    # scipy.stats, sklearn.metrics and aiohttp last: they are what broke after `import paddle`
    modules = order + ["scipy.stats", "sklearn.metrics", "aiohttp"]
    proc = run_python("import importlib\nfor m in %r: importlib.import_module(m)\nprint('ok')" % modules)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_zlib_works_after_paddle_when_cli_comes_first():
    proc = run_python("import cli, paddle, gzip, zlib\n"
                      "assert gzip.decompress(gzip.compress(b'x' * 1000)) == b'x' * 1000\n"
                      "assert zlib.decompress(zlib.compress(b'y' * 99)) == b'y' * 99\nprint('ok')")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_fleet_strategy_builds_as_paddleslim_builds_it():
    """What AutoCompression builds for a multi-GPU run (compressor._prepare_fleet_strategy): with
    protobuf 7.x Paddle 2.6 fails here, `'FieldDescriptor' object has no attribute 'label'`."""
    proc = run_python("import cli\nfrom paddle.distributed import fleet\n"
                      "s = fleet.DistributedStrategy()\n"
                      "s.recompute = True\ns.recompute_configs = {'checkpoints': ['a', 'b']}\n"
                      "s.amp = True\ns.amp_configs = {'init_loss_scaling': 1024.0, 'custom_white_list': ['matmul']}\n"
                      "s.sharding = True\ns.sharding_configs = {'sharding_degree': 1}\n"
                      "assert s.amp_configs['custom_white_list'] == ['matmul']\n"
                      "assert s.recompute_configs['checkpoints'] == ['a', 'b']\nprint('ok')")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
