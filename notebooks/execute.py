"""Execute the notebooks as a reader would, from a folder outside the checkout, and keep their outputs.

    .venv/bin/python notebooks/execute.py                      # all four, outputs written back in place
    .venv/bin/python notebooks/execute.py 04_compare.ipynb     # one

Each notebook is copied into a fresh temporary folder that holds nothing else, and runs there (its data
comes from `icai.datasets`, so it needs no checkout around it); its run directories go to `runs/` in that
folder (`ICAI_NOTEBOOK_OUT=runs`, a relative path, so the outputs name no folder of this machine). Cell
timing metadata is not recorded, so a re-run changes only what the code printed. tests/test_notebooks.py
executes them the same way (`execute`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
NAMES = ["01_quickstart.ipynb", "02_real_dataset.ipynb", "03_use_a_constitution.ipynb", "04_compare.ipynb"]
TIMEOUT_S = 900


def execute(notebook: Path, workdir: Path, *, out_dir: str = "runs", env: dict[str, str] | None = None) -> Any:
    """Run a copy of `notebook` inside `workdir` (created, and holding only that copy) with run directories
    under `workdir / out_dir`; returns the executed notebook (nbformat node). The kernel is this
    interpreter's `python3` and inherits this process's environment plus `env`."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / notebook.name
    shutil.copyfile(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    kernel_env = {**os.environ, "ICAI_NOTEBOOK_OUT": out_dir, "HF_HUB_OFFLINE": "1", **(env or {})}
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute(cwd=str(workdir), env=kernel_env)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=NAMES, help="notebook file names in notebooks/ (default: all)")
    args = parser.parse_args(argv)
    for name in args.names:
        with tempfile.TemporaryDirectory(prefix="icai-notebook-") as tmp:
            start = time.perf_counter()
            nb = execute(HERE / name, Path(tmp) / "elsewhere")
            nbformat.write(nb, HERE / name)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
