"""Run outputs on a local disk or in a bucket (``gs://...``), through :mod:`etils.epath`.

Everything mdg writes into a workdir (checkpoints, metrics.jsonl, config.json, results/) goes
through :func:`path` and :func:`write_atomic`, so a ``gs://bucket/run`` workdir works like a
local folder. Local paths behave exactly as with :mod:`pathlib`.
"""
from __future__ import annotations

import os
import uuid

from etils import epath


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a remote location (``scheme://...``), not a local file."""
    return "://" in os.fspath(path)


def path(location: str | os.PathLike) -> epath.Path:
    """``location`` as an :class:`epath.Path` (local file or ``gs://`` object), unchanged otherwise."""
    return epath.Path(location)


def absolute(location: str | os.PathLike) -> epath.Path:
    """:func:`path`, made absolute when local (against the current directory); URLs as given."""
    return path(location if is_url(location) else os.path.abspath(location))


def write_atomic(location: str | os.PathLike, data: str | bytes) -> epath.Path:
    """Writes ``data`` (text as UTF-8, line ends untouched) to a temporary sibling of ``location``,
    then renames it over ``location``; returns the path.

    Readers never see a half-written file: locally the rename is atomic; on a bucket the object
    appears only once whole. On any error the temporary file is removed and the old file stays.
    """
    target = path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target
