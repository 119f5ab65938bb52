#!/bin/sh
# Rebuilds third_party/pyrfr-0.9.0+swig.tar.gz from PyPI's pyrfr 0.9.0 sdist (BSD-3-Clause).
# Only changes: adds pyproject.toml (build requires the PyPI `swig` wheel) and the local version label +swig.
set -e
d=$(mktemp -d); cd "$d"
pip download --no-deps --no-binary :all: pyrfr==0.9.0 -d .
tar xzf pyrfr-0.9.0.tar.gz && mv pyrfr-0.9.0 pyrfr-0.9.0+swig && cd pyrfr-0.9.0+swig
sed -i 's/version="0.9.0"/version="0.9.0+swig"/' setup.py
sed -i 's/^Version: 0.9.0$/Version: 0.9.0+swig/' PKG-INFO pyrfr.egg-info/PKG-INFO
cat > pyproject.toml <<'TOML'
# Added for this project: PyPI's pyrfr 0.9.0 sdist has no pyproject.toml and no cp311 wheel,
# so it needs a `swig` binary on PATH. Declaring the PyPI `swig` wheel as a build requirement
# lets pip's isolated build environment provide it (no system swig needed).
[build-system]
requires = ["setuptools>=61,<82", "swig==4.5.1"]
build-backend = "setuptools.build_meta"
TOML
cd .. && tar --owner=0 --group=0 --numeric-owner --sort=name --mtime='2023-02-13' -czf pyrfr-0.9.0+swig.tar.gz pyrfr-0.9.0+swig
echo "$d/pyrfr-0.9.0+swig.tar.gz"
