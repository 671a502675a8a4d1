"""Resumable searches: the on-disk state of a search, written atomically.

After every trained architecture the search writes one file,
``search-NNNN.ckpt`` (NNNN = records so far), holding the history, the
position in the loop, the random generator's state and the weights of the
current and the best network. The file is written under a temporary name and
renamed into place, so a crash, SIGKILL or Ctrl-C mid-write leaves the
previous checkpoint untouched; the newest two are kept, so a file truncated by
other means (a full disk on a network file system, a copy cut short) falls
back to the one before it. ``history.json`` beside them is a readable copy of
the history for people and other tools; loading never reads it.

Checkpoints are loaded with ``torch.load(weights_only=True)``: plain tensors
and containers, no pickled code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
_NAME = re.compile(r"^search-(\d{4,})\.ckpt$")
_TEMP = re.compile(r"^\.(search-\d{4,}\.ckpt|history\.json)\..*\.tmp$")
KEEP = 2


class CheckpointError(OSError):
    """A checkpoint could not be written (full disk, permissions); the previous one is kept.

    An ``OSError`` whose ``errno`` is the failed write's; its message names the
    directory and the checkpoint that was kept. Free space and call ``fit``
    again to resume from it.

    Parameters
    ----------
    errno : int or None
        The failed write's error number (e.g. ``errno.ENOSPC``).
    message : str
        What failed and which checkpoint is kept.
    """

    def __init__(self, errno, message):
        super().__init__(errno, message)


def data_fingerprint(images: np.ndarray, y: np.ndarray, classes: np.ndarray) -> str:
    """Hash of the training data as the search sees it (pixels, labels, classes)."""
    h = hashlib.blake2b(digest_size=16)
    for a in (images, y):
        a = np.asarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        if a.flags.c_contiguous:
            h.update(a.data)
            continue
        # A channel-last view (fit's images): hash its C-order bytes a few
        # samples at a time, the same digest without a copy of the whole set.
        step = max(1, (1 << 24) // max(1, a[:1].nbytes))
        for start in range(0, len(a), step):
            h.update(np.ascontiguousarray(a[start:start + step]).data)
    h.update(repr([str(c) for c in classes]).encode())
    return h.hexdigest()


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, np.random.RandomState):
        # A generator's state changes with every fit: only "not an int" matters.
        return "<RandomState instance>"
    return value


def params_fingerprint(params: dict, ignore=()) -> dict:
    """The estimator parameters that decide the search's course, as JSON values."""
    return {k: _jsonable(v) for k, v in sorted(params.items()) if k not in ignore}


class SearchCheckpoint:
    """Reads and writes the checkpoints of one search in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Created if missing. Files other than ``search-*.ckpt`` and
        ``history.json`` are never touched.
    fingerprint : dict
        ``{"data": str, "params": dict}``; a checkpoint with another
        fingerprint is refused unless ``overwrite``.
    overwrite : bool
        Discard a checkpoint of another search instead of raising.
    """

    def __init__(self, directory, fingerprint: dict, overwrite: bool = False):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.overwrite = overwrite
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"checkpoint_dir={str(directory)!r} exists and is not a directory")

    # ----------------------------------------------------------------- files
    def files(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def clear(self) -> None:
        """Remove this search's files (only ours)."""
        for p in self.files() + self._stale_temporaries():
            p.unlink(missing_ok=True)
        (self.directory / "history.json").unlink(missing_ok=True)

    def _stale_temporaries(self) -> list[Path]:
        """Temporary files a killed writer left (one search writes a directory)."""
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.iterdir() if _TEMP.match(p.name)]

    # ------------------------------------------------------------------ load
    def load(self) -> dict | None:
        """The newest readable state, or None when there is none to resume.

        Raises
        ------
        ValueError
            The checkpoint belongs to a search on other data or with other
            parameters (and ``overwrite`` is False).
        """
        for path in reversed(self.files()):
            try:
                state = _read(path)
            except Exception as exc:  # truncated or corrupt: the previous one may be good
                warnings.warn(f"checkpoint {path} is unreadable ({type(exc).__name__}: "
                              f"{exc}); falling back to the previous one", UserWarning,
                              stacklevel=3)
                continue
            problem = self._mismatch(state["fingerprint"])
            if problem is None:
                return state
            if self.overwrite:
                self.clear()
                return None
            raise ValueError(
                f"checkpoint_dir={str(self.directory)!r} holds a search with {problem}. "
                "Use another directory, or overwrite_checkpoint=True to discard it "
                "(cross-validation and grid search fit many models: give them no "
                "checkpoint_dir, or one per fit)")
        return None

    def _mismatch(self, theirs: dict) -> str | None:
        if theirs.get("data") != self.fingerprint["data"]:
            return "different training data (or labels)"
        mine, old = self.fingerprint["params"], theirs.get("params", {})
        diff = [f"{k}={old.get(k)!r} (now {mine.get(k)!r})" for k in sorted(set(mine) | set(old))
                if json.dumps(mine.get(k), sort_keys=True) != json.dumps(old.get(k), sort_keys=True)]
        if diff:
            return "different parameters: " + ", ".join(diff)
        return None

    # ----------------------------------------------------------------- write
    def save(self, meta: dict, tensors: dict) -> Path:
        """Write one checkpoint atomically; keep the newest ``KEEP``, drop later ones.

        ``meta`` must be JSON-serialisable (with ``history``); ``tensors`` maps
        names to state dicts. Raises :class:`CheckpointError` when the write
        fails (full disk, permissions); the previous checkpoint stays.
        """
        meta = {**meta, "format_version": FORMAT_VERSION, "fingerprint": self.fingerprint}
        n = len(meta["history"])
        path = self.directory / f"search-{n:04d}.ckpt"
        payload = {"meta": json.dumps(meta), **tensors}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _atomic(path, lambda f: torch.save(payload, f))
            _atomic(self.directory / "history.json",
                    lambda f: f.write(json.dumps(meta["history"], indent=1).encode()))
        except OSError as exc:
            kept = [p.name for p in self.files() if p != path]
            raise CheckpointError(
                exc.errno, f"could not write the search checkpoint to {self.directory} "
                f"({exc.strerror or exc}); the previous checkpoint "
                f"({kept[-1] if kept else 'none'}) is kept: free space and call fit "
                "again to resume") from exc
        # The state just written is the newest: a later one (a search rewound
        # to where max_time first left an operation out) is superseded.
        files = self.files()
        newer = files[files.index(path) + 1:]
        kept = files[:files.index(path) + 1]
        for old in newer + kept[:-KEEP] + self._stale_temporaries():
            old.unlink(missing_ok=True)
        return path


def _atomic(path: Path, write) -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave a half-written file
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(payload.pop("meta"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {meta.get('format_version')!r}, "
                         f"expected {FORMAT_VERSION}")
    if len(meta["history"]) != int(_NAME.match(path.name).group(1)):
        raise ValueError("record count does not match the file name")
    return {**meta, "tensors": payload}
