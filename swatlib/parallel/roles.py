"""What the master and the workers of WASAP-SGD / WASSP-SGD do, apart from how their messages travel.

Both :mod:`swatlib.parallel.processes` (real processes over ``torch.distributed``) and
:func:`swatlib.parallel.simulate` (one process, the ordered schedule) drive these objects, so the
in-process simulator and the processes compute the same thing by construction.

* :class:`Replica` — a worker's copy of the SET-MLP, its data shard and its random streams: it
  computes the sparse gradient of one mini-batch into a flat buffer, and takes the master's values
  (and, when the topology changed, its connections) back.
* :class:`Master` — the model of record: applies gradients with the run's optimizer as they
  arrive, counts updates, and at the end of every master epoch runs the epoch-end topology
  algorithms (Importance Pruning, then SET, as the sequential runs do). It remembers how every
  topology step moved the connections, so that a gradient computed on an older topology reaches
  only connections that still exist (**RetainValidUpdates**): through the step's old → new map
  (``retain="map"``, default) or by position key (``retain="position"``, the authors' code, under
  which a connection removed and regrown at the same position receives the stale gradient).
* :func:`average_replicas` — the end of phase 2: the union of the replicas' connections, each
  weight the mean over the replicas that hold it (``"mean"``, the paper's reading) or their sum
  over K with absent = 0 (``"sum"``, the authors' code), then per layer the smallest-magnitude
  weights of each sign pruned back to the target number of connections.

Random streams are separate and named (:func:`stream_seed`): the network and the master's SET
draw from ``Generator(seed)``, exactly as a sequential run builds its network; worker ``r``'s batch
order, dropout masks and phase-2 SET each have their own stream. ``algorithm="sequential"`` uses the
streams of worker 1 of 1, so WASAP-SGD with one worker in the ordered schedule reproduces it bit for bit.

Parameters travel as one flat float32 buffer: per linear layer its connection values, then its bias
(:func:`model_parameters`). Connections travel as one int64 tensor (:func:`pack_topology`), and only
when they change.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from swatlib.checks import check_choice
from swatlib.experiments.truly_sparse import build_model
from swatlib.optim import make_optimizer
from swatlib.sparse.erdos_renyi import flat_keys
from swatlib.topology import SET, ConnectionMap, ImportancePruning, evolvable_layers
from swatlib.train import Classification, gradient_flow

__all__ = [
    "AVERAGING",
    "RETAIN",
    "Master",
    "Replica",
    "average_replicas",
    "load_topology",
    "model_parameters",
    "pack_topology",
    "read_values",
    "shard",
    "snapshot",
    "state_digest",
    "stream_seed",
    "write_values",
]

#: RetainValidUpdates options (module docstring).
RETAIN = ("map", "position")

#: Averaging rules (module docstring).
AVERAGING = ("mean", "sum")

_PURPOSES = ("batches", "dropout", "local_set")


def stream_seed(seed: int, purpose: str, rank: int) -> int:
    """Seed of one named random stream of one rank (``purpose`` ∈ batches, dropout, local_set)."""
    state = np.random.SeedSequence([int(seed), _PURPOSES.index(purpose), int(rank)]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def model_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trained tensors in transfer order: per linear layer its values, then its bias."""
    params = []
    for layer in model.linears:
        params.append(layer.values)
        if layer.bias is not None:
            params.append(layer.bias)
    return params


@torch.no_grad()
def write_values(model: nn.Module, out: torch.Tensor) -> int:
    """Every parameter of ``model`` (:func:`model_parameters` order) into the flat ``out``; returns the length."""
    offset = 0
    for param in model_parameters(model):
        out[offset:offset + param.numel()].copy_(param.view(-1))
        offset += param.numel()
    return offset


@torch.no_grad()
def read_values(model: nn.Module, flat: torch.Tensor) -> None:
    """Inverse of :func:`write_values`: copy the flat values into ``model``'s parameters."""
    offset = 0
    for param in model_parameters(model):
        param.copy_(flat[offset:offset + param.numel()].view_as(param))
        offset += param.numel()


def shard(data, rank: int, workers: int):
    """Worker ``rank``'s (1-based) contiguous, disjoint share of the training split.

    Every shard holds ``n // workers`` samples (the authors' contiguous shards; the last
    ``n mod workers`` samples are not used), the test split is kept whole.
    """
    size = len(data.y_train) // workers
    part = slice((rank - 1) * size, rank * size)
    return dataclasses.replace(data, x_train=data.x_train[part], y_train=data.y_train[part])


def pack_topology(model: nn.Module) -> torch.Tensor:
    """Every layer's shape and connections as one int64 tensor (what a worker needs after a change).

    Layout: ``[L, out_1, in_1, nnz_1, …, out_L, in_L, nnz_L, rows_1, cols_1, …, rows_L, cols_L]``.
    """
    layers = list(model.linears)
    head = [len(layers)] + [v for l in layers for v in (l.out_features, l.in_features, l.nnz)]
    parts = [torch.tensor(head, dtype=torch.int64)]
    for layer in layers:
        rows, cols, _ = layer.connections()
        parts += [rows.to(torch.int64), cols.to(torch.int64)]
    return torch.cat(parts)


def unpack_topology(packed: torch.Tensor) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Inverse of :func:`pack_topology`: ``(out, in, rows, cols)`` per layer."""
    count = int(packed[0])
    head = packed[1:1 + 3 * count].view(count, 3).tolist()
    offset, layers = 1 + 3 * count, []
    for n_out, n_in, nnz in head:
        rows = packed[offset:offset + nnz]
        cols = packed[offset + nnz:offset + 2 * nnz]
        layers.append((n_out, n_in, rows, cols))
        offset += 2 * nnz
    return layers


@torch.no_grad()
def load_topology(model: nn.Module, layers: Sequence[tuple[int, int, torch.Tensor, torch.Tensor]]) -> None:
    """Give ``model`` these layer shapes and connections (values and biases zero until loaded)."""
    state = model.state_dict()
    for index, (n_out, n_in, rows, cols) in enumerate(layers):
        prefix = f"linears.{index}."
        layer = model.linears[index]
        state[prefix + "_extra_state"] = {**layer.get_extra_state(), "out_features": n_out, "in_features": n_in}
        state[prefix + "row_indices"] = rows.clone()
        state[prefix + "col_indices"] = cols.clone()
        state[prefix + "values"] = torch.zeros(rows.numel(), dtype=layer.values.dtype)
        if layer.bias is not None:
            state[prefix + "bias"] = torch.zeros(n_out, dtype=layer.bias.dtype)
    model.load_state_dict(state)


@torch.no_grad()
def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state (connections included), to evaluate later."""
    return {key: value.clone() if torch.is_tensor(value) else dict(value)
            for key, value in model.state_dict().items()}


def model_from_snapshot(spec: dict[str, Any], state: dict[str, Any]) -> nn.Module:
    """The SET-MLP of ``spec`` holding a :func:`snapshot` (any shape Importance Pruning left)."""
    sizes = [state["linears.0._extra_state"]["in_features"]]
    sizes += [state[f"linears.{i}._extra_state"]["out_features"] for i in range(len(spec["sizes"]) - 1)]
    model = build_model(spec, torch.Generator().manual_seed(0), sizes=sizes)
    model.load_state_dict(state)
    return model


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's tensors (connections, values, biases): equal digests, identical networks."""
    sha = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if torch.is_tensor(value):
            sha.update(key.encode())
            sha.update(value.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


class Replica:
    """A worker's replica: the SET-MLP of ``spec``, its shard and its random streams.

    Parameters
    ----------
    spec
        A Truly Sparse run spec (:func:`swatlib.experiments.truly_sparse.make_spec`, a SET-MLP).
    data
        The dataset; the replica trains on its :func:`shard`.
    rank, workers
        This worker's rank (1…K) and K.
    """

    def __init__(self, spec: dict[str, Any], data, rank: int, workers: int) -> None:
        self.spec = spec
        self.rank = rank
        self.model = build_model(spec, torch.Generator().manual_seed(spec["seed"]))
        self.model.train()
        self.task = Classification(shard(data, rank, workers))
        self.batch_generator = torch.Generator().manual_seed(stream_seed(spec["seed"], "batches", rank))
        with torch.random.fork_rng():
            torch.manual_seed(stream_seed(spec["seed"], "dropout", rank))
            self.rng_state = torch.get_rng_state()
        self._batches = self._endless_batches()
        self.version = 0
        self.based_on = 0

    @property
    def batches_per_pass(self) -> int:
        """Mini-batches in one pass over the shard."""
        return math.ceil(len(self.task.data.y_train) / self.spec["batch_size"])

    def _endless_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from self.task.batches(self.spec["batch_size"], self.batch_generator)

    def compute(self, out: torch.Tensor) -> int:
        """Gradient of the next mini-batch at the current values, into ``out``; returns its length.

        ``out`` receives every parameter's gradient in :func:`model_parameters` order, then the
        batch loss and the step's gradient flow (:func:`swatlib.train.gradient_flow`).
        """
        batch = next(self._batches)
        with torch.random.fork_rng():
            torch.set_rng_state(self.rng_state)
            loss = self.task.loss(self.model, batch)
            self.rng_state = torch.get_rng_state()
        params = model_parameters(self.model)
        for param in params:
            param.grad = None
        loss.backward()
        flow = gradient_flow(self.model)
        offset = 0
        for param in params:
            out[offset:offset + param.numel()].copy_(param.grad.view(-1))
            offset += param.numel()
        out[offset] = loss.detach()
        out[offset + 1] = flow
        for param in params:
            param.grad = None
        return offset + 2

    def load_values(self, flat: torch.Tensor) -> None:
        """Copy the master's values (:func:`model_parameters` order) into the replica."""
        read_values(self.model, flat)

    def train_locally(self, epochs: int, *, phase2: str, overwrite_every: int,
                      record=None) -> None:
        """Phase 2: train the replica alone for ``epochs`` passes over its shard with its own SET.

        Parameters
        ----------
        epochs
            Local epochs (≥ 1).
        phase2
            ``"local"`` (the paper); ``"overwrite"`` (the authors' code): every ``overwrite_every``
            steps the replica is reset to the master's weights it received at the end of phase 1,
            so local progress is lost.
        record
            Called with the local epoch (1-based) after each epoch, before its SET step.
        """
        from swatlib.train import fit  # the one loop; imported here to keep this module's import light

        spec = self.spec
        optimizer = make_optimizer(spec["optimizer"], self.model.parameters(), lr=spec["lr"],
                                   momentum=spec["momentum"], weight_decay=spec["weight_decay"])
        local_set = SET(evolvable_layers(self.model), zeta=spec["zeta"], regrow_init=spec["regrow_init"],
                        until=epochs - 1, optimizer=optimizer,
                        generator=torch.Generator().manual_seed(stream_seed(spec["seed"], "local_set", self.rank)))
        frozen = snapshot(self.model) if phase2 == "overwrite" else None
        steps = 0

        def overwrite() -> None:
            nonlocal steps
            steps += 1
            if frozen is not None and steps % overwrite_every == 0:
                self.model.load_state_dict(frozen)

        with torch.random.fork_rng():
            torch.set_rng_state(self.rng_state)
            fit(self.model, _Unscored(self.task), optimizer, epochs=epochs, batch_size=spec["batch_size"],
                generator=self.batch_generator, log=lambda line: None, topology=[local_set],
                on_epoch_end=record, after_step=overwrite if frozen is not None else None)
            self.rng_state = torch.get_rng_state()


class _Unscored:
    """A task trained like ``task`` whose per-epoch evaluation is deferred (snapshots are scored later)."""

    def __init__(self, task) -> None:
        self.task = task

    def batches(self, batch_size, generator):
        return self.task.batches(batch_size, generator)

    def loss(self, model, batch):
        return self.task.loss(model, batch)

    def examples(self, batch):
        return self.task.examples(batch)

    def evaluate(self, model) -> dict[str, float]:
        return {}


class Master:
    """The model of record: applies gradients, runs the epoch-end topology steps, retains valid updates.

    Parameters
    ----------
    spec
        A Truly Sparse run spec (SET-MLP).
    updates_per_epoch
        Updates that make one master epoch (as many as batches in one pass over the data).
    model
        The network to own; default a fresh one built from ``spec`` (WASSP-SGD workers pass their
        replica's).
    retain
        RetainValidUpdates option, one of :data:`RETAIN`.
    lr_at
        ``lr_at(update)`` → learning rate of that update (0-based); default the spec's constant lr.
    record
        Take a :func:`snapshot` at every epoch end (the process whose model is reported does).
    """

    def __init__(self, spec: dict[str, Any], *, updates_per_epoch: int, model: nn.Module | None = None,
                 retain: str = "map", lr_at=None, record: bool = True) -> None:
        generator = torch.Generator().manual_seed(spec["seed"])
        built = build_model(spec, generator)
        self.model = built if model is None else model
        self.spec = spec
        self.updates_per_epoch = updates_per_epoch
        self.retain = retain
        self.lr_at = lr_at
        self.record = record
        self.optimizer = make_optimizer(spec["optimizer"], self.model.parameters(), lr=spec["lr"],
                                        momentum=spec["momentum"], weight_decay=spec["weight_decay"])
        self.topology: list[Any] = []
        ip = spec["importance_pruning"]
        if ip:
            self.topology.append(ImportancePruning(self.model, start_epoch=ip["start_epoch"], every=ip["every"],
                                                   percentile=ip["percentile"], mode=ip["mode"],
                                                   optimizer=self.optimizer))
        # The master's SET continues the stream that built the network, as a sequential run's does.
        self.topology.append(SET(evolvable_layers(self.model), zeta=spec["zeta"], regrow_init=spec["regrow_init"],
                                 until=spec["epochs"] - 1, optimizer=self.optimizer, generator=generator))
        self.params = model_parameters(self.model)
        self.version = 0
        self.updates = 0
        self.epoch = 0
        self.sizes = {0: [p.numel() for p in self.params]}
        self.steps: dict[int, list[list[ConnectionMap | None]]] = {}
        self.staleness: collections.Counter[int] = collections.Counter()
        self.snapshots: list[dict[str, Any]] = []
        self._epoch_flow = 0.0
        self._epoch_updates = 0
        self.clock_start = time.perf_counter()
        self.topology_seconds = 0.0

    def pack_values(self, out: torch.Tensor) -> int:
        """Current values (:func:`model_parameters` order) into ``out``; returns the length."""
        return write_values(self.model, out)

    def apply(self, payload: torch.Tensor, *, version: int, based_on: int) -> bool:
        """Apply one gradient message (as :meth:`Replica.compute` wrote it); True if an epoch ended.

        Parameters
        ----------
        payload
            Gradients for the topology ``version`` they were computed on, then loss and flow.
        version
            The topology version of the sender's replica.
        based_on
            The update count of the values the gradient was computed at: the staleness recorded
            is the number of updates applied since.
        """
        sizes = self.sizes[version]
        grads = list(torch.split(payload[:sum(sizes)], sizes))
        if version != self.version:
            grads = self._retain_valid(grads, version)
        if self.lr_at is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.updates)
        for param, grad in zip(self.params, grads):
            param.grad = grad
        self.optimizer.step()
        for param in self.params:
            param.grad = None
        self.staleness[self.updates - based_on] += 1
        self.updates += 1
        self._epoch_flow += float(payload[sum(sizes) + 1])
        self._epoch_updates += 1
        if self.updates % self.updates_per_epoch == 0:
            self._end_epoch()
            return True
        return False

    def _retain_valid(self, grads: list[torch.Tensor], version: int) -> list[torch.Tensor]:
        """A gradient of topology ``version`` carried through every later topology step."""
        for v in range(version, self.version):
            for maps in self.steps[v]:
                grads = [g if m is None else m.gather(g) for g, m in zip(grads, maps)]
        return grads

    def forget_before(self, version: int) -> None:
        """Drop the maps of topology steps no replica can still be behind (all are at ``version`` or later)."""
        for v in [v for v in self.steps if v < version]:
            del self.steps[v], self.sizes[v]

    def _end_epoch(self) -> None:
        self.epoch += 1
        if self.record:
            self.snapshots.append({
                "epoch": self.epoch, "wall": time.perf_counter() - self.clock_start,
                "state": snapshot(self.model), "gradient_flow": self._epoch_flow / self._epoch_updates,
            })
        self._epoch_flow = 0.0
        self._epoch_updates = 0
        start = time.perf_counter()
        steps = []
        for algorithm in self.topology:
            keys = self._keys() if self.retain == "position" else None
            changed = algorithm.step()
            if changed:
                steps.append(self._param_maps(algorithm, changed, keys))
        self.topology_seconds += time.perf_counter() - start
        if steps:
            self.steps[self.version] = steps
            self.version += 1
            self.params = model_parameters(self.model)
            self.sizes[self.version] = [p.numel() for p in self.params]

    def _keys(self) -> list[torch.Tensor]:
        return [flat_keys(*layer.connections()[:2], layer.in_features) for layer in self.model.linears]

    def _param_maps(self, algorithm, changed: dict[int, ConnectionMap],
                    keys_before: list[torch.Tensor] | None) -> list[ConnectionMap | None]:
        """One topology step as a map per transferred parameter (``None``: unchanged)."""
        linears = list(self.model.linears)
        index_of = {id(layer): i for i, layer in enumerate(linears)}
        value_maps: dict[int, ConnectionMap] = {index_of[id(algorithm.layers[j])]: m for j, m in changed.items()}
        bias_maps: dict[int, ConnectionMap] = {}
        if isinstance(algorithm, ImportancePruning) and algorithm.mode == "remove":
            for i, dropped in enumerate(algorithm.dropped):
                if dropped.numel():
                    old = linears[i].out_features + dropped.numel()
                    keep = torch.ones(old, dtype=torch.bool)
                    keep[dropped] = False
                    bias_maps[i] = ConnectionMap(keep.nonzero().squeeze(1), old)
        elif keys_before is not None:  # SET under retain="position": match by position key
            for i in value_maps:
                old_keys = keys_before[i]
                new_keys = flat_keys(*linears[i].connections()[:2], linears[i].in_features)
                at = torch.searchsorted(old_keys, new_keys).clamp_(max=max(old_keys.numel() - 1, 0))
                same = old_keys[at] == new_keys
                value_maps[i] = ConnectionMap(torch.where(same, at, torch.full_like(at, -1)), old_keys.numel())
        maps: list[ConnectionMap | None] = []
        for i, layer in enumerate(linears):
            maps.append(value_maps.get(i))
            if layer.bias is not None:
                maps.append(bias_maps.get(i))
        return maps


def _prune_to(values: torch.Tensor, target: int) -> torch.Tensor:
    """Indices (sorted) of the weights kept when the smallest-magnitude ones of each sign go.

    The ``excess = len(values) − target`` removals are shared between the non-negative and the
    negative weights in proportion to their counts (each sign loses the same fraction, as SET
    prunes); within a sign the weights closest to zero go first (ties: the lower index goes).
    """
    excess = values.numel() - target
    if excess <= 0:
        return torch.arange(values.numel())
    nonneg = (values >= 0).nonzero().squeeze(1)
    neg = (values < 0).nonzero().squeeze(1)
    from_nonneg = min(nonneg.numel(), round(excess * nonneg.numel() / values.numel()))
    from_neg = excess - from_nonneg
    if from_neg > neg.numel():
        from_nonneg, from_neg = excess - neg.numel(), neg.numel()
    removed = torch.cat([nonneg[torch.argsort(values[nonneg], stable=True)[:from_nonneg]],
                         neg[torch.argsort(-values[neg], stable=True)[:from_neg]]])
    keep = torch.ones(values.numel(), dtype=torch.bool)
    keep[removed] = False
    return keep.nonzero().squeeze(1)


@torch.no_grad()
def average_replicas(states: Sequence[dict[str, Any]], rule: str = "mean",
                     targets: Sequence[int] | None = None) -> dict[str, Any]:
    """Average K replica state dicts of one SET-MLP over the union of their connections.

    Parameters
    ----------
    states
        The replicas' ``state_dict()`` (same layer shapes; connections may differ).
    rule
        ``"mean"``: over the replicas holding a connection (the paper's reading); ``"sum"``: the
        sum over all K, a replica without the connection adding 0 (the authors' code).
    targets
        Connections per layer after the pruning (default: the first replica's counts).

    Returns
    -------
    dict
        A state dict with, per layer, the union pruned back to its target (sorted row-major) and the
        mean bias.

    Raises
    ------
    ValueError
        On an unknown rule, no replicas, or replicas whose layer shapes differ.
    """
    check_choice(rule, AVERAGING, "rule")
    if not states:
        raise ValueError("states must hold at least one replica")
    first = states[0]
    layers = sorted({int(key.split(".")[1]) for key in first if key.startswith("linears.")})
    out = dict(first)
    k = len(states)
    for i in layers:
        prefix = f"linears.{i}."
        extra = first[prefix + "_extra_state"]
        n_out, n_in = extra["out_features"], extra["in_features"]
        for state in states[1:]:
            other = state[prefix + "_extra_state"]
            if (other["out_features"], other["in_features"]) != (n_out, n_in):
                raise ValueError(f"replicas disagree on the shape of layer {i}")
        keys = torch.cat([flat_keys(s[prefix + "row_indices"], s[prefix + "col_indices"], n_in) for s in states])
        values = torch.cat([s[prefix + "values"] for s in states]).to(torch.float64)
        union, where = torch.unique(keys, sorted=True, return_inverse=True)
        total = torch.zeros(union.numel(), dtype=torch.float64).index_add_(0, where, values)
        holders = torch.bincount(where, minlength=union.numel()).to(torch.float64)
        average = (total / holders if rule == "mean" else total / k).to(first[prefix + "values"].dtype)
        target = first[prefix + "values"].numel() if targets is None else int(targets[i])
        kept = _prune_to(average, target)
        out[prefix + "row_indices"] = union[kept] // n_in
        out[prefix + "col_indices"] = union[kept] % n_in
        out[prefix + "values"] = average[kept].clone()
        if prefix + "bias" in first:
            out[prefix + "bias"] = (torch.stack([s[prefix + "bias"].to(torch.float64) for s in states]).mean(0)
                                    .to(first[prefix + "bias"].dtype))
    return out
