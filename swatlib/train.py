"""The training loop shared by every notebook that trains a classifier.

One epoch = one pass over a shuffled training split in mini-batches, then an evaluation of the
training and test splits. Every epoch prints one progress line (papermill stores each line as
notebook output, so there is no progress bar) and adds one plain-dict record to the history, which
goes into the results cache unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


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


def fit(
    model: nn.Module,
    data,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    label: str = "run",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train ``model`` on ``data`` (a :class:`swatlib.data.Dataset`) with cross-entropy.

    Parameters
    ----------
    model, optimizer
        Any classifier returning logits, and a stock ``torch.optim`` optimizer over its parameters.
    data
        Object with ``x_train, y_train, x_test, y_test`` tensors.
    epochs, batch_size
        Number of passes and mini-batch size (the last, smaller batch is kept).
    generator
        Drives the shuffling, so a seed fixes the whole run.
    label
        Prefix of the progress lines.
    log
        Receives one line per epoch.

    Returns
    -------
    list of dict
        Per epoch: ``epoch, train_loss, train_acc, test_loss, test_acc, seconds`` (training time).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    history = []
    n = len(data.x_train)
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        record = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                      test_loss=test_loss, test_acc=test_acc, seconds=seconds)
        history.append(record)
        log(f"{label}: epoch {epoch}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}"
            f"  test loss {test_loss:.4f} acc {test_acc:.4f}  {seconds:.1f} s")
    return history
