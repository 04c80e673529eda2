"""The arguments every benchmark shares, with one meaning and one default: `--device` (cuda where there is
one, else cpu). Each benchmark adds its own on top (`benchmark_parser(__doc__)`)."""

from __future__ import annotations

import argparse

import torch

DEVICES = ("cpu", "cuda")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser described by the first paragraph of the benchmark's docstring, with `--device`."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=default_device(),
        help="where to run (default: cuda where there is one, else cpu)",
    )
    return parser
