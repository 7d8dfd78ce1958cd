#!/usr/bin/env bash
# Fetch, on a machine with pip access, the wheels that scripts/gpu_run.sh installs on a GPU machine
# that has CUDA torch but no network and no Jupyter: what `jupyter execute`, `pytest --nbval` and
# chapter 7's widgets need, for CPython 3.12 on x86-64 Linux (override with PY_VERSION). Packages
# such an image usually has already (numpy, matplotlib, tqdm, attrs, packaging, psutil, pygments, python-dateutil,
# typing-extensions, pytest, pytest-xdist, coverage) are not fetched.
#
#   bash scripts/gpu_wheels.sh            # into .whl/ (ignored by git)
#   bash scripts/gpu_wheels.sh DIR        # into DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
py_version=${PY_VERSION:-3.12}

# nbclient, nbformat, ipykernel, ipywidgets, nbval (pytest --nbval on the GPU) and everything they
# need, pinned to the versions the book's notebooks were last executed with here
wheels=(
  nbval==0.11.0 nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0 ipywidgets==8.1.9 ipython==9.18.1
  jupyter-client==8.10.0 jupyter-core==5.9.1 traitlets==5.16.1 tornado==6.6.1 pyzmq==27.3.0
  comm==0.2.3 debugpy==1.8.22 matplotlib-inline==0.2.2 nest-asyncio2==1.7.4 platformdirs==4.14.9
  widgetsnbextension==4.0.16 jupyterlab-widgets==3.0.17 fastjsonschema==2.22.3 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
  ipython-pygments-lexers==1.1.1 jedi==0.20.1 parso==0.8.7 prompt-toolkit==3.0.53 wcwidth==0.9.4
  pexpect==4.9.0 ptyprocess==0.7.0 stack-data==0.6.3 executing==2.3.0 asttokens==3.0.2
  pure-eval==0.2.4 tzdata==2026.6
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py_version" --implementation cp \
  "${platforms[@]}" -d "$dest" "${wheels[@]}"
echo "$(ls "$dest"/*.whl | wc -l) wheels in $dest ($(du -sh "$dest" | cut -f1))"
