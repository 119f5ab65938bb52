"""Copy the benchmark tables into README.md, so that no number in it is typed by hand.

    python benchmarks/render_readme.py

Each `<!-- results:NAME -->` ... `<!-- /results:NAME -->` block of README.md is replaced by the
tables rendered from benchmarks/NAME/results.json (NAME: latency, latency/avx2, reproduce, ptq_diagnostic), headings moved
under the README's own heading (their title dropped, sections two levels down).
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "latency"))

import common  # noqa: E402  (puts the repository root on sys.path, loads the system zlib)
import bench_latency  # noqa: E402
import ptq_diagnostic  # noqa: E402
import reproduce  # noqa: E402

# results folder under benchmarks/ -> its renderer (latency/avx2: the latency benchmark on an AVX2-only CPU)
RENDERERS = {"latency": bench_latency.render, "latency/avx2": bench_latency.render, "reproduce": reproduce.render,
             "ptq_diagnostic": ptq_diagnostic.summary}


def block(name):
    with open(os.path.join(HERE, name, "results.json")) as f:
        text = RENDERERS[name](json.load(f))
    text = re.sub(r"\A# .*\n", "", text)  # the README's own heading stands for the title
    text = re.sub(r"^##", "####", text, flags=re.M)
    png = os.path.join(HERE, name, "accuracy_vs_latency.png")
    if os.path.isfile(png):
        text += f"\n![SST-2 dev accuracy against latency](benchmarks/{name}/accuracy_vs_latency.png)\n"
    return text.strip()


def main(argv=None):
    path = os.path.join(common.ROOT, "README.md")
    with open(path) as f:
        readme = f.read()
    for name in RENDERERS:
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if pattern.search(readme) and os.path.isfile(os.path.join(HERE, name, "results.json")):
            readme = pattern.sub(lambda m: m.group(1) + block(name) + "\n" + m.group(2), readme)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(readme)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
