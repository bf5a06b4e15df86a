"""The process group a launcher described, read once from the environment (no framework).

`d2lcompat launch` (and the DP conformance scenarios) start each worker with
``D2LCOMPAT_RANK``, ``D2LCOMPAT_WORLD_SIZE`` and ``D2LCOMPAT_ADDRESSES`` (one
``host:port`` per worker, the first is the coordinator). Workers started by a
framework's own launcher (``torchrun``, ``python -m paddle.distributed.launch``)
carry that launcher's variables instead; the adapter reads those itself.
Adapters import this module (it imports no framework) so that TensorFlow, which must
join its cluster before its runtime starts, reads the same description.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import D2LCompatError

__all__ = ["ENV_ADDRESSES", "ENV_RANK", "ENV_TIMEOUT", "ENV_WORLD_SIZE", "Cluster", "free_ports"]

ENV_RANK = "D2LCOMPAT_RANK"
ENV_WORLD_SIZE = "D2LCOMPAT_WORLD_SIZE"
ENV_ADDRESSES = "D2LCOMPAT_ADDRESSES"
ENV_TIMEOUT = "D2LCOMPAT_DIST_TIMEOUT"


@dataclass(frozen=True)
class Cluster:
    """One worker's view of the process group: its rank, how many workers, their addresses.

    Examples
    --------
    >>> c = Cluster.from_env({"D2LCOMPAT_RANK": "1", "D2LCOMPAT_WORLD_SIZE": "2",
    ...                       "D2LCOMPAT_ADDRESSES": "127.0.0.1:5000,127.0.0.1:5001"})
    >>> c.rank, c.world_size, c.coordinator
    (1, 2, '127.0.0.1:5000')
    """

    rank: int
    world_size: int
    addresses: tuple[str, ...]
    #: Seconds a collective (and joining the group) may wait for the other workers.
    timeout: float = 300.0

    @property
    def coordinator(self) -> str:
        """``host:port`` of worker 0, where the group meets."""
        return self.addresses[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Cluster | None:
        """The cluster ``env`` (default ``os.environ``) describes, or None when it describes none."""
        env = os.environ if env is None else env
        if ENV_WORLD_SIZE not in env:
            return None
        try:
            world = int(env[ENV_WORLD_SIZE])
            rank = int(env.get(ENV_RANK, "0"))
            timeout = float(env.get(ENV_TIMEOUT, "300"))
        except ValueError as exc:
            raise D2LCompatError(
                f"{ENV_WORLD_SIZE}, {ENV_RANK} and {ENV_TIMEOUT} must be numbers ({exc}). "
                "Start the workers with `d2lcompat launch`."
            ) from None
        addresses = tuple(a.strip() for a in env.get(ENV_ADDRESSES, "").split(",") if a.strip())
        if world < 1 or not 0 <= rank < world:
            raise D2LCompatError(
                f"{ENV_RANK}={rank} must be in [0, {ENV_WORLD_SIZE}={world}). "
                "Start the workers with `d2lcompat launch`."
            )
        if world > 1 and len(addresses) != world:
            raise D2LCompatError(
                f"{ENV_ADDRESSES} must list {world} host:port addresses (one per worker, "
                f"the coordinator first); got {len(addresses)}. Start the workers with "
                "`d2lcompat launch`."
            )
        return cls(rank, world, addresses, timeout)

    def env(self) -> dict[str, str]:
        """The environment variables that describe this worker (the inverse of `from_env`)."""
        return {
            ENV_RANK: str(self.rank),
            ENV_WORLD_SIZE: str(self.world_size),
            ENV_ADDRESSES: ",".join(self.addresses),
            ENV_TIMEOUT: str(self.timeout),
        }


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free on ``host`` now, chosen by the OS (bind to port 0).

    All sockets stay open until every port is chosen, so the ports differ.

    Examples
    --------
    >>> a, b = free_ports(2)
    >>> a != b and a > 0
    True
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
