"""Reading ``results/summary.json`` (all methods; layout in the README) for the report."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from mdg import storage


def read_summary(results_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``<results_dir>/summary.json`` as a dict, None if absent; raises naming the file if not JSON."""
    path = storage.path(results_dir) / "summary.json"
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    if not isinstance(document, dict) or not isinstance(document.get("methods"), dict):
        raise ValueError(f"{path}: no \"methods\" object; expected the all-methods summary of "
                         "mdg.evaluate.write_report")
    return document


def threshold(document: Mapping[str, Any] | None, method: str, machine: str) -> float | None:
    """The decision threshold of a method and machine type, None where unknown."""
    if document is None:
        return None
    entry = document["methods"].get(method, {}).get("machines", {}).get(machine, {})
    return entry.get("threshold")
