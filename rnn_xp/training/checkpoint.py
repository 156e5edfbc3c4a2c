"""Checkpoints as safetensors files: model and optimizer arrays, plus a JSON metadata block (step, optimizer
settings, RNG and data-stream state, model configuration).

The safetensors layout is written and read here directly (8-byte little-endian header size, a JSON header of
``{name: {dtype, shape, data_offsets}}`` and ``__metadata__``, then the raw little-endian bytes), so the
``safetensors`` package is not needed; files are interchangeable with it. Writes are atomic (temporary file in the
same directory, fsync, rename, the usual file permissions; temporary files left by a killed write are removed by the
next write); the metadata carries a SHA-256 of everything a load returns (names, dtypes, shapes, the other metadata and
the tensor bytes), which loads verify. Every problem with a file is a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rnn_xp._device import to_numpy

FORMAT = "rnn-xp-checkpoint/1"
_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
_CODES = {np.dtype(v).name: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20
_DIGEST_KEY = "sha256-all"  # names, dtypes, shapes, metadata and tensor bytes (see _digest)
_LEGACY_DIGEST_KEY = "sha256"  # earlier files: the tensor bytes only, still verified when present


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, foreign, or does not match what it is loaded into."""


def save_safetensors(path: str | os.PathLike[str], arrays: dict[str, Any], metadata: dict[str, str]) -> None:
    """Write ``arrays`` (any NumPy/CuPy/torch arrays) and string ``metadata`` atomically to ``path``."""
    host = {name: _little_endian(np.ascontiguousarray(to_numpy(value))) for name, value in arrays.items()}
    entries: dict[str, Any] = {}
    offset = 0
    for name, value in host.items():
        if value.dtype.name not in _CODES:
            msg = f"arrays[{name!r}] has dtype {value.dtype}; checkpoints hold {sorted(_CODES)}"
            raise TypeError(msg)
        entries[name] = {"dtype": _CODES[value.dtype.name], "shape": list(value.shape),
                         "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    digest = _digest(metadata, entries, [value.tobytes() for value in host.values()])
    header: dict[str, Any] = {"__metadata__": {**metadata, _DIGEST_KEY: digest}, **entries}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(struct.pack("<Q", len(encoded)))
            file.write(encoded)
            for value in host.values():
                file.write(value.tobytes())
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file into NumPy arrays and its metadata, checking its structure.

    Raises
    ------
    CheckpointError
        Not a safetensors file, a truncated file, or offsets that do not add up.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        msg = f"{path} cannot be read as a checkpoint ({error.strerror or error})"
        raise CheckpointError(msg) from None
    if len(data) < 8:
        msg = f"{path} is not a safetensors checkpoint: {len(data)} bytes"
        raise CheckpointError(msg)
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER, len(data) - 8):
        msg = (
            f"{path} is not a safetensors checkpoint, or is truncated "
            f"(header of {size} bytes in a {len(data)}-byte file)"
        )
        raise CheckpointError(msg)
    try:
        header = json.loads(data[8 : 8 + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        msg = f"{path} is not a safetensors checkpoint: unreadable header ({error})"
        raise CheckpointError(msg) from None
    if not isinstance(header, dict):
        msg = f"{path} is not a safetensors checkpoint: the header is not a JSON object"
        raise CheckpointError(msg)
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + size :]
    arrays: dict[str, np.ndarray] = {}
    end_of_data = 0
    for name, entry in header.items():
        try:
            dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
            shape = tuple(int(n) for n in entry["shape"])
            start, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            msg = f"{path}: entry {name!r} is not a supported safetensors entry ({entry!r})"
            raise CheckpointError(msg) from None
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - start != expected or end > len(body) or start < 0:
            msg = (
                f"{path} is truncated or corrupt: {name!r} needs bytes {start}..{end} ({expected} expected) "
                f"of a {len(body)}-byte body"
            )
            raise CheckpointError(msg)
        arrays[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        end_of_data = max(end_of_data, end)
    if end_of_data != len(body):
        msg = f"{path} is corrupt: {len(body) - end_of_data} bytes after the last tensor"
        raise CheckpointError(msg)
    metadata = dict(metadata)
    whole_digest, tensor_digest = metadata.pop(_DIGEST_KEY, None), metadata.pop(_LEGACY_DIGEST_KEY, None)
    tensors = [body[int(e["data_offsets"][0]) : int(e["data_offsets"][1])] for e in header.values()]
    if whole_digest is not None and _digest(metadata, header, tensors) != whole_digest:
        msg = f"{path} is corrupt: its names, shapes, metadata or tensor bytes do not match the checksum written"
        raise CheckpointError(msg)
    if tensor_digest is not None and _legacy_digest(tensors) != tensor_digest:
        msg = f"{path} is corrupt: the tensor bytes do not match the checksum written with them"
        raise CheckpointError(msg)
    return arrays, dict(metadata)


def _digest(metadata: dict[str, Any], entries: dict[str, Any], tensors: list[Any]) -> str:
    """SHA-256 of everything a load returns: the metadata (but the checksum), every entry's name, dtype, shape and
    offsets, in file order, and the tensor bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([metadata, list(entries.items())], sort_keys=True, separators=(",", ":")).encode())
    for tensor in tensors:
        digest.update(tensor)
    return digest.hexdigest()


def _legacy_digest(tensors: list[Any]) -> str:
    """The checksum of files written before 2026-11-24 (``sha256``): the tensor bytes only."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor)
    return digest.hexdigest()


def _little_endian(value: np.ndarray) -> np.ndarray:
    return value.astype(value.dtype.newbyteorder("<"), copy=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_orphans(target: Path, *, older_than_s: float = 60.0) -> None:
    """Temporary files of earlier writes to ``target`` that were killed before their rename."""
    cutoff = time.time() - older_than_s
    for orphan in target.parent.glob(f".{target.name}.*"):
        try:
            if orphan.is_file() and orphan.stat().st_mtime < cutoff:
                orphan.unlink()
        except OSError:
            continue


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    params: dict[str, Any],
    optimizer_arrays: dict[str, Any],
    state: dict[str, Any],
) -> None:
    """Model parameters (``model.*``), optimizer state (``optim.*``) and a JSON ``state`` (step, optimizer config,
    RNG and stream state, model config) in one safetensors file."""
    arrays = {f"model.{k}": v for k, v in params.items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer_arrays.items()})
    save_safetensors(path, arrays, {"format": FORMAT, "state": json.dumps(state)})


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_params: dict[str, Any] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """(params, optimizer arrays, state) from :func:`save_checkpoint`'s file.

    With ``expected_params``, every name, shape and dtype must match them (a model built from the same config).
    """
    arrays, metadata = load_safetensors(path)
    if metadata.get("format") != FORMAT:
        msg = f"{path} is a safetensors file but not an rnn_xp checkpoint (format {metadata.get('format')!r})"
        raise CheckpointError(msg)
    params = {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")}
    optimizer = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
    if expected_params is not None:
        missing = sorted(set(expected_params) - set(params))
        extra = sorted(set(params) - set(expected_params))
        if missing or extra:
            msg = f"{path} does not fit this model: missing {missing}, unexpected {extra}"
            raise CheckpointError(msg)
        for name, value in expected_params.items():
            host = to_numpy(value)
            if params[name].shape != host.shape or params[name].dtype != host.dtype:
                msg = (
                    f"{path}: {name!r} is {params[name].dtype}{list(params[name].shape)}; "
                    f"the model has {host.dtype}{list(host.shape)}"
                )
                raise CheckpointError(msg)
    try:
        state = json.loads(metadata["state"])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        msg = f"{path} is corrupt: its state block is not readable JSON ({error})"
        raise CheckpointError(msg) from None
    return params, optimizer, state
