"""Checkpoints as safetensors files: model and optimizer arrays, plus a JSON metadata block (step, optimizer
settings, RNG and data-stream state, model configuration).

The file format is read and written by the ``safetensors`` package (the format's reference implementation), which
checks the header, the offsets and the sizes. Around it, writes are atomic (temporary file in the same directory,
fsync, rename, the usual file permissions; temporary files left by a killed write are removed by the next write),
and the metadata carries a SHA-256 of everything a load returns, which loads verify. Every problem with a file is a
:class:`CheckpointError` naming it.

Checksums: files written here hold ``content_sha256``, over the other metadata, then each tensor in the order of
their names: its name, dtype, shape and little-endian C-order bytes (a flipped bit in a name or in the state block
must not load silently either). Files written before rnn_xp used the package (a hand-written writer of the same
format) hold ``sha256``, over the tensor bytes only, in the order of their bytes in the file; both are verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rnn_xp._arrays import to_numpy

FORMAT = "rnn-xp-checkpoint/1"
_DTYPES = ("float32", "float64", "int64", "int32", "uint8")
_DIGEST = "content_sha256"
_LEGACY_DIGEST = "sha256"


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, foreign, or does not match what it is loaded into."""


def _safetensors() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as error:
        msg = f"checkpoints need the safetensors package: pip install safetensors ({error})"
        raise ImportError(msg) from None
    return safetensors


def _digest(metadata: dict[str, str], arrays: dict[str, np.ndarray]) -> str:
    """``content_sha256``: the metadata (without the checksum), then every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(arrays):
        value = _little_endian(np.ascontiguousarray(arrays[name]))
        digest.update(json.dumps([name, value.dtype.name, list(value.shape)]).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _legacy_digest(arrays: Iterable[np.ndarray]) -> str:
    """``sha256`` of the hand-written writer: the tensor bytes only, in file order."""
    digest = hashlib.sha256()
    for value in arrays:
        digest.update(_little_endian(np.ascontiguousarray(value)).tobytes())
    return digest.hexdigest()


def save_safetensors(path: str | os.PathLike[str], arrays: dict[str, Any], metadata: dict[str, str]) -> None:
    """Write ``arrays`` (any NumPy/CuPy/torch arrays) and string ``metadata`` atomically to ``path``."""
    safetensors = _safetensors()
    host = {name: np.ascontiguousarray(to_numpy(value)) for name, value in arrays.items()}
    for name, value in host.items():
        if value.dtype.name not in _DTYPES:
            msg = f"arrays[{name!r}] has dtype {value.dtype}; checkpoints hold {sorted(_DTYPES)}"
            raise TypeError(msg)
    encoded = safetensors.numpy.save(host, metadata={**metadata, _DIGEST: _digest(metadata, host)})
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(encoded)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file into NumPy arrays and its metadata (without the checksum, which is verified).

    Raises
    ------
    CheckpointError
        Unreadable, not a safetensors file, truncated or corrupt (sizes that do not add up, a checksum that does not
        match the tensor bytes).
    """
    safetensors = _safetensors()
    try:
        with safetensors.safe_open(str(path), framework="numpy") as file:
            metadata = dict(file.metadata() or {})
            names = list(file.offset_keys())
            arrays = {name: np.array(file.get_tensor(name)) for name in names}
    except OSError as error:
        msg = f"{path} cannot be read as a checkpoint ({error.strerror or error})"
        raise CheckpointError(msg) from None
    except safetensors.SafetensorError as error:
        msg = f"{path} is not a safetensors checkpoint, or is truncated or corrupt ({error})"
        raise CheckpointError(msg) from None
    expected, legacy = metadata.pop(_DIGEST, None), metadata.pop(_LEGACY_DIGEST, None)
    if expected is not None and _digest(metadata, arrays) != expected:
        msg = f"{path} is corrupt: its names, shapes, metadata or tensor bytes do not match the checksum written"
        raise CheckpointError(msg)
    if legacy is not None and _legacy_digest(arrays[name] for name in names) != legacy:
        msg = f"{path} is corrupt: the tensor bytes do not match the checksum written with them"
        raise CheckpointError(msg)
    return arrays, metadata


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
    """Write model parameters, optimizer state and a JSON ``state`` in one safetensors file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced only once the new one is complete).
    params : dict of str to array
        Model parameters (NumPy or CuPy arrays), stored as ``model.{name}``.
    optimizer_arrays : dict of str to array
        The optimizer's state arrays (``optimizer.state_arrays()``), stored as ``optim.{name}``.
    state : dict
        Anything JSON can hold: step, optimizer config, RNG and stream state, model config.
    """
    arrays = {f"model.{k}": v for k, v in params.items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer_arrays.items()})
    save_safetensors(path, arrays, {"format": FORMAT, "state": json.dumps(state)})


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_params: dict[str, Any] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    expected_params : dict of str to array, optional
        When given, every stored parameter's name, shape and dtype must match these (a model built from the same
        config).

    Returns
    -------
    params : dict of str to numpy.ndarray
        The model parameters.
    optimizer_arrays : dict of str to numpy.ndarray
        The optimizer's state arrays.
    state : dict
        The JSON state saved with them.

    Raises
    ------
    CheckpointError
        The file is not a readable checkpoint, or does not match ``expected_params``.
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
