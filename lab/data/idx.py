"""Read and write the IDX format (the raw layout of MNIST-style datasets)."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

# IDX type code for unsigned bytes; MNIST-style data only uses this one.
_UBYTE = 0x08


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file, atomically (a crash never leaves half a file)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer takes uint8 arrays, got {array.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, _UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(array.tobytes())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a data file should read like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes; raises ValueError on a malformed or truncated file."""
    data = Path(path).read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _UBYTE:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(shape))
    if len(body) != expected:
        raise ValueError(f"{path}: IDX body has {len(body)} bytes, header says {expected} (truncated or corrupted)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)
