"""The one training loop: any loss, topology algorithms at their declared points, the FLOP ledger.

One epoch = one pass over the task's training batches, then the task's evaluation. What is trained
on and how it is scored is a *task*: ``batches(batch_size, generator)`` (one epoch of training
batches), ``loss(model, batch)``, ``evaluate(model) -> {metric: value}`` and ``examples(batch)``
(examples in a batch, for the ledger). :class:`Classification` — cross-entropy, loss and accuracy on
the training and test splits — is the default: :func:`fit` wraps a plain dataset in it. A
masked-language model brings its own task.

Topology algorithms (:mod:`swatlib.topology`) are stepped where they declare: ``"optimizer_step"``
ones after every ``optimizer.step()``, ``"epoch"`` ones after the epoch's evaluation, in the order
given (Importance Pruning before SET, as the authors do). :func:`train_step` is one step of the loop
on its own, for code that drives training itself (a parallel worker, a notebook cell).

Every epoch prints one progress line (papermill stores each line as notebook output, so there is no
progress bar) and adds one plain-dict record to the history, which goes into the results cache unchanged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from swatlib.checks import check_int
from swatlib.topology import WHEN


def use_threads(threads: int) -> int:
    """Set torch's intra-op thread count; returns the count in force.

    On two busy cores, one thread was often the fastest for the small convolutions and sparse
    kernels of these experiments, so notebooks expose it as a parameter.
    """
    check_int(threads, "threads")
    torch.set_num_threads(threads)
    return torch.get_num_threads()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


class Classification:
    """The default task: cross-entropy on a labelled dataset, loss and accuracy on both splits.

    Parameters
    ----------
    data
        Object with ``x_train, y_train, x_test, y_test`` tensors (a :class:`swatlib.data.Dataset`).
    """

    def __init__(self, data) -> None:
        self.data = data

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of ``(x, y)`` mini-batches in a random order drawn from ``generator`` (last one smaller)."""
        n = len(self.data.x_train)
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            yield self.data.x_train[idx], self.data.y_train[idx]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of the batch."""
        x, y = batch
        return F.cross_entropy(model(x), y)

    def examples(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        """Examples in the batch."""
        return len(batch[1])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``train_loss, train_acc, test_loss, test_acc`` in eval mode."""
        train_loss, train_acc = evaluate(model, self.data.x_train, self.data.y_train)
        test_loss, test_acc = evaluate(model, self.data.x_test, self.data.y_test)
        return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}


def _connection_weights(model: nn.Module) -> list[torch.Tensor]:
    """The connection weights whose gradient is the "gradient flow" (biases excluded)."""
    linears = getattr(model, "linears", None)
    if linears is None:
        return [p for p in model.parameters() if p.dim() > 1]
    return [l.values if hasattr(l, "values") else l.weight for l in linears]


def gradient_flow(model: nn.Module) -> float:
    """Squared norm of the loss gradient over the existing connections (seed 001, Figure 5)."""
    return float(sum(w.grad.pow(2).sum() for w in _connection_weights(model) if w.grad is not None))


def _check_topology(topology: Sequence[Any]) -> list[Any]:
    for algorithm in topology:
        if getattr(algorithm, "when", None) not in WHEN or not callable(getattr(algorithm, "step", None)):
            raise ValueError(f"topology entries must be topology algorithms (step() and when in {WHEN}), "
                             f"got {type(algorithm).__name__}")
    return list(topology)


def train_step(model: nn.Module, task, batch, optimizer: torch.optim.Optimizer, *,
               topology: Sequence[Any] = (), after_step: Callable[[], None] | None = None,
               ledger=None) -> tuple[float, float]:
    """One training step: loss, backward, ``optimizer.step()``, then the per-step topology algorithms.

    Parameters
    ----------
    model, task, batch, optimizer
        As for :func:`fit`; ``batch`` is one item of ``task.batches``.
    topology
        Algorithms; those with ``when == "optimizer_step"`` are stepped here, in order.
    after_step
        Called last (e.g. a learning-rate scheduler's ``step``).
    ledger
        A :class:`swatlib.costmodel.MeasuredLedger` that is recording: the step is closed with
        ``end_step(examples)``.

    Returns
    -------
    (float, float)
        The batch loss and the :func:`gradient_flow` of this step.
    """
    loss = task.loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    flow = gradient_flow(model)
    optimizer.step()
    for algorithm in topology:
        if algorithm.when == "optimizer_step":
            algorithm.step()
    if after_step is not None:
        after_step()
    if ledger is not None:
        ledger.end_step(task.examples(batch))
    return loss.item(), flow


def fit(
    model: nn.Module,
    task,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    label: str = "run",
    log: Callable[[str], None] = print,
    topology: Sequence[Any] = (),
    on_epoch_end: Callable[[int], None] | None = None,
    after_step: Callable[[], None] | None = None,
    ledger=None,
    stop_when: Callable[[dict], bool] | None = None,
) -> list[dict]:
    """Train ``model`` on ``task`` for ``epochs`` epochs, or until ``stop_when`` says so.

    Parameters
    ----------
    model, optimizer
        Any model and an optimizer over its parameters.
    task
        A task (module docstring), or a dataset with ``x_train, y_train, x_test, y_test`` tensors,
        which is trained as a :class:`Classification`.
    epochs, batch_size
        Number of passes and mini-batch size.
    generator
        Drives the batch order, so a seed fixes the whole run.
    label
        Prefix of the progress lines.
    log
        Receives one line per epoch.
    topology
        Topology algorithms (:mod:`swatlib.topology`), stepped where each declares.
    on_epoch_end
        Called with the epoch number (1-based) after the evaluation, before the epoch's topology
        steps (e.g. to record the trained topology).
    after_step
        Called after every step's topology steps (e.g. a learning-rate scheduler).
    ledger
        A :class:`swatlib.costmodel.MeasuredLedger`: training steps run inside it, and each one is
        closed with ``end_step(examples)``. Evaluation is not recorded.
    stop_when
        Called with each epoch's record (below) once it is logged; training ends after the first
        epoch for which it returns True (e.g. a target loss reached), so the history is a prefix of
        the full run's.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, the task's metrics (classification: ``train_loss, train_acc,
        test_loss, test_acc``); ``seconds`` (training), ``eval_seconds``, ``topology_seconds``
        (the epoch-end topology steps); ``gradient_flow`` (mean over the epoch's steps of
        :func:`gradient_flow`); and, for models that report them, ``nnz`` and ``hidden_neurons``
        after the epoch.
    """
    check_int(epochs, "epochs")
    check_int(batch_size, "batch_size")
    topology = _check_topology(topology)
    if not hasattr(task, "loss"):
        task = Classification(task)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        flow, steps = 0.0, 0
        with ledger if ledger is not None else contextlib.nullcontext():
            for batch in task.batches(batch_size, generator):
                flow += train_step(model, task, batch, optimizer, topology=topology,
                                   after_step=after_step, ledger=ledger)[1]
                steps += 1
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        metrics = task.evaluate(model)
        eval_seconds = time.perf_counter() - start
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        start = time.perf_counter()
        for algorithm in topology:
            if algorithm.when == "epoch":
                algorithm.step()
        topology_seconds = time.perf_counter() - start
        record = dict(epoch=epoch, **metrics, seconds=seconds, eval_seconds=eval_seconds,
                      topology_seconds=topology_seconds, gradient_flow=flow / steps)
        if hasattr(model, "nnz"):
            record["nnz"] = int(model.nnz)
        if hasattr(model, "hidden_neurons"):
            record["hidden_neurons"] = list(model.hidden_neurons)
        history.append(record)
        log(f"{label}: epoch {epoch}/{epochs}  "
            + "  ".join(f"{name.replace('_', ' ')} {value:.4f}" for name, value in metrics.items())
            + f"  {seconds:.1f} s" + (f"  nnz {record['nnz']}" if "nnz" in record else ""))
        if stop_when is not None and stop_when(record) and epoch < epochs:
            log(f"{label}: stopped after epoch {epoch}/{epochs}")
            break
    return history
