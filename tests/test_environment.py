"""The pinned set imports in any order, cli keeps zlib usable after `import paddle`, and Paddle's MKL takes its
AVX2 path on an AMD CPU after run.py's set-up."""
import os
import subprocess
import sys
from pathlib import Path

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


AMD_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n"


@pytest.mark.parametrize("cpuinfo, preset, expected", [
    (AMD_AVX2, None, "5"),
    (AMD_AVX2.replace(" avx2", ""), None, None),  # no AVX2 kernels to pick
    (AMD_AVX2.replace("AuthenticAMD", "GenuineIntel"), None, None),  # MKL picks Intel's best itself
    (AMD_AVX2, "4", "4"),  # the user's value stands
    (None, None, None),  # no /proc/cpuinfo
], ids=["amd-avx2", "amd-no-avx2", "intel", "user-set", "no-cpuinfo"])
def test_mkl_avx2_on_amd_sets_the_variable_only_where_it_helps(tmp_path, monkeypatch, cpuinfo, preset, expected):
    import workarounds

    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo * 2)
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    if preset is not None:
        monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", preset)
    with workarounds.mkl_avx2_on_amd(str(path)) as fixed:
        assert fixed == (expected is not None and preset is None)
        assert os.environ.get("MKL_DEBUG_CPU_TYPE") == expected
    assert os.environ.get("MKL_DEBUG_CPU_TYPE") == preset  # processes started afterwards do not inherit it


MKL_PATH = ("    import ctypes, os, paddle\n"
            "    mkl = ctypes.CDLL(os.path.join(os.path.dirname(paddle.__file__), 'libs', 'libmklml_intel.so'))\n"
            "    print(mkl.mkl_serv_cpu_detect())\n")  # MKL's code path: 0 generic, 5 AVX2, above it AVX-512


@pytest.mark.skipif("avx2" not in Path("/proc/cpuinfo").read_text(), reason="needs a CPU with AVX2")
def test_paddles_mkl_takes_its_avx2_kernels_after_run_py_set_up():
    """Paddle's training kernels call its bundled MKL (2019.0.5), which took its generic path on AMD."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    fixed = subprocess.run([sys.executable, "-c", "import cli, workarounds\nwith workarounds.mkl_avx2_on_amd():\n" + MKL_PATH],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert int(fixed.stdout.split()[-1]) >= 5
