"""Messages between the roles: preallocated buffers over ``torch.distributed`` point-to-point calls.

A :class:`Message` is one float32 buffer allocated once per run: :data:`HEADER` int32 fields (a view
of the same memory) followed by the payload — gradients and loss from a worker, current values from
the master. It is sized for the largest payload of the run (Importance Pruning only shrinks a
network, SET keeps its size), and a message sends only the used prefix: gloo accepts a receive
buffer longer than the message.

Receives are posted before the matching send (``irecv``): on the reference machine a blocking
receive cost ≈ 4 ms per message and a pre-posted one ≈ 0.2 ms. The master's receive may name no
source (gloo's any-source receive) and learns the sender from the completed request. Messages
longer than ``chunk`` elements travel as several sends — the first with the message's tag, the rest
with ``tag + 1`` so that a pre-posted any-source receive never takes another message's continuation.
gloo itself carries a tensor over 2 GB intact; the chunked path exists so that no single transfer
needs one and is tested with a small forced ``chunk``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["DEFAULT_CHUNK", "HEADER", "Message", "Pending", "recv_tensor", "send_tensor"]

#: int32 header fields at the start of every message.
HEADER = 8

#: Elements per transfer (256 Mi float32 = 1 GiB).
DEFAULT_CHUNK = 1 << 28

# Header fields.
KIND, VERSION, BASED_ON, LENGTH, TOPOLOGY, STOP = range(6)

# Tags (each leaves tag + 1 for its continuation chunks).
TAG_GRADIENT, TAG_REPLY, TAG_TOPOLOGY, TAG_REPLICA = 10, 20, 30, 40


class Message:
    """A preallocated message: int32 header fields and a float32 payload in one buffer.

    Parameters
    ----------
    capacity
        Largest payload (float32 elements) the message will carry.
    chunk
        Largest number of elements per transfer.
    """

    def __init__(self, capacity: int, chunk: int = DEFAULT_CHUNK) -> None:
        if chunk < HEADER:
            raise ValueError(f"chunk must be at least {HEADER} elements, got {chunk}")
        self.buffer = torch.zeros(HEADER + capacity, dtype=torch.float32)
        self.header = self.buffer[:HEADER].view(torch.int32)
        self.payload = self.buffer[HEADER:]
        self.chunk = chunk
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def length(self) -> int:
        """Payload elements of the message held now (its ``LENGTH`` field)."""
        return int(self.header[LENGTH])

    def send(self, dst: int, tag: int) -> None:
        """Send the header and ``LENGTH`` payload elements to ``dst`` (blocking, in chunks)."""
        total = HEADER + self.length
        self.bytes_sent += 4 * total
        dist.send(self.buffer[:min(total, self.chunk)], dst=dst, tag=tag)
        send_tensor(self.buffer[self.chunk:total], dst, tag + 1, self.chunk)

    def isend(self, dst: int, tag: int) -> list:
        """Start sending the header and ``LENGTH`` payload elements to ``dst``; returns the requests.

        The buffer must not change until every request has completed (``wait()``).
        """
        total = HEADER + self.length
        self.bytes_sent += 4 * total
        return [dist.isend(self.buffer[start:min(total, start + self.chunk)], dst=dst,
                           tag=tag if start == 0 else tag + 1)
                for start in range(0, total, self.chunk)]

    def post(self, src: int | None, tag: int) -> Pending:
        """Post the receive of this message's first chunk from ``src`` (``None``: any sender)."""
        first = self.buffer[:min(self.buffer.numel(), self.chunk)]
        return Pending(self, dist.irecv(first, src=src, tag=tag), tag)


class Pending:
    """A posted receive of a :class:`Message`; :meth:`wait` completes it and names the sender."""

    def __init__(self, message: Message, work, tag: int) -> None:
        self.message, self.work, self.tag = message, work, tag

    def wait(self) -> int:
        """Wait for the whole message (first chunk, then its continuation); return the sender's rank."""
        self.work.wait()
        src = self.work._source_rank()
        total = HEADER + self.message.length
        rest = self.message.buffer[self.message.chunk:total]
        if rest.numel():
            recv_tensor(rest, src, self.tag + 1, self.message.chunk)
        self.message.bytes_received += 4 * total
        return src


def send_tensor(tensor: torch.Tensor, dst: int, tag: int, chunk: int = DEFAULT_CHUNK) -> None:
    """Send a contiguous 1-D tensor in transfers of at most ``chunk`` elements (blocking)."""
    for start in range(0, tensor.numel(), chunk):
        dist.send(tensor[start:start + chunk], dst=dst, tag=tag)


def recv_tensor(tensor: torch.Tensor, src: int, tag: int, chunk: int = DEFAULT_CHUNK) -> None:
    """Receive into a contiguous 1-D tensor what :func:`send_tensor` sent with the same ``chunk``."""
    for start in range(0, tensor.numel(), chunk):
        dist.recv(tensor[start:start + chunk], src=src, tag=tag)
