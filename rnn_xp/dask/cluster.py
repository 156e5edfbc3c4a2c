"""Which Dask cluster to use: ``ADDRESS`` (an existing scheduler) or ``local:N`` (N local worker processes)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from distributed import Client, LocalCluster

CONNECT_TIMEOUT_S = 10.0
_LOCAL = re.compile(r"^local:(\d+)$")
# A scheduler address: optional protocol, a host name or IPv4/bracketed IPv6 address, and a port.
_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss)://)?(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$")


@dataclass(frozen=True)
class ClusterTarget:
    """``local_workers`` for ``local:N``; otherwise ``address``."""

    text: str
    local_workers: int | None = None
    address: str | None = None

    @property
    def label(self) -> str:
        return f"local{self.local_workers}" if self.local_workers is not None else "cluster"


def parse_target(text: str) -> ClusterTarget:
    """``"local:N"`` (N >= 1) or a scheduler address such as ``tcp://10.0.0.5:8786`` or ``host:8786``.

    Raises
    ------
    ValueError
        Anything else, naming what was expected.
    """
    local, address = _LOCAL.match(text), _ADDRESS.match(text)
    if local is not None and int(local.group(1)) >= 1:
        return ClusterTarget(text, local_workers=int(local.group(1)))
    if local is None and address is not None and 1 <= int(address.group(1)) <= 65535:
        return ClusterTarget(text, address=text)
    msg = f"expected a scheduler address (tcp://HOST:PORT or HOST:PORT) or local:N with N >= 1; got {text!r}"
    raise ValueError(msg)


@contextlib.contextmanager
def connect(target: ClusterTarget) -> Iterator[Client]:
    """A client of the target: a fresh LocalCluster of N one-thread worker processes, or the running scheduler.

    Raises
    ------
    ConnectionError
        No scheduler answered at the address within :data:`CONNECT_TIMEOUT_S`.
    """
    if target.local_workers is not None:
        with LocalCluster(n_workers=target.local_workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0", silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            client.wait_for_workers(target.local_workers, timeout=60)
            yield client
        return
    try:
        client = Client(target.address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        msg = f"no Dask scheduler answered at {target.address!r} within {CONNECT_TIMEOUT_S:g} s ({error})"
        raise ConnectionError(msg) from None
    with client:
        yield client
