"""The experiments behind the SWAT notebooks (``30``–``32``): cached training runs and memory.

One training run = one network (:class:`~swatlib.models.SmallCNN` or the SET-MLP-shaped
:class:`~swatlib.models.MLP`) trained on Fashion-MNIST (or, with ``dataset="cifar10"``, CIFAR-10) with one method:

==============  ==========================================================================
method          what runs
==============  ==========================================================================
``dense``       the stock network
``swat-u``      :func:`~swatlib.swat.swatify` ``method="u"`` (first layer dense); ``mode``
                selects the sensitivity-study variants of paper Fig. 2 (SPEC §5)
``swat-erk``    ``swatify(method="erk", first_layer_dense=False)`` — SPEC §5's ERK rule over
                every layer, as the cost model's ``swat-erk``
``swat-m``      ``swatify(method="m")`` + :class:`~swatlib.topology.SWATM` after every step
``set``         :func:`~swatlib.swat.masked_set`, evolving once per epoch (**masked**)
``rigl``        :func:`~swatlib.swat.masked_rigl`, ΔT = ``rigl_delta_t`` (**masked**)
``meprop``      :func:`~swatlib.swat.meprop`: Top-K of the output gradient in every layer
==============  ==========================================================================

The methods are the entries of :data:`~swatlib.experiments.swat_methods.REGISTRY`; the papers'
choices they use (RigL's α and T_end, SET's ζ, which first layers stay dense, the SGD recipe) are
data in :mod:`~swatlib.experiments.swat_settings`. Every run goes through the results cache with its
full config (:func:`make_spec`, via :mod:`~swatlib.experiments.runs`), so a configuration asked for
by two notebooks trains once, and :func:`run_many` can train independent runs in parallel.

FLOPs (FLOPs = 2·MACs, conv / linear work per training example, the papers' accounting):

* **measured** — a :class:`~swatlib.costmodel.MeasuredLedger` around the training steps: SWAT
  and meProp layers report the nonzeros they really multiplied, plain layers are watched
  through hooks. A zero-skipping machine also skips the *natural* zeros (after ReLU), so even
  dense training measures below its nominal cost; compare methods with the ratio to the dense
  run measured the same way (:func:`swatlib.experiments.swat_tables.accuracy_vs_flops`).
* **nominal** — the cost model's formula (:func:`swatlib.costmodel.plan`) for the same network,
  method and density. For the masked SET and RigL runs the nominal figure *is* their cost:
  their masked layers multiply zeros and compute a dense weight gradient, so the measured
  ledger would describe the masked implementation, not the truly sparse method (SPEC §6).

Every run follows SWAT's CIFAR recipe, shortened: SGD with momentum and weight decay, the
learning rate decayed to zero over the run (:mod:`~swatlib.experiments.swat_settings`). The batch
size defaults to the recipe's (:data:`~swatlib.experiments.swat_settings.BATCH_SIZE`); a profile
may set its own, as it sets data size, width, epochs and learning rate
(``notebooks/params/*.yaml``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from swatlib.checks import check_choice, check_int, check_seeds
from swatlib.densities import check_density, density_of_sparsity_percent
from swatlib.costmodel import (MeasuredLedger, MethodOptions, TopKCost, backward_memory,
                               layer_table, nominal_ledger, plan)
from swatlib.experiments import runs
from swatlib.experiments.swat_methods import REGISTRY, get_method
from swatlib.experiments.swat_settings import (BATCH_SIZE, MOMENTUM, RIGL_DELTA_T, SCHEDULE,
                                               WEIGHT_DECAY)
from swatlib.models import MLP, SmallCNN
from swatlib.swat import MODES, SWATLayer, step_peak, swatify
from swatlib.train import fit

__all__ = [
    "DATASETS", "DATASET_NAMES", "EXPERIMENT", "FAMILY", "METHODS", "METHOD_LABELS", "MODE_LABELS",
    "SENSITIVITY_MODES", "RunResult", "build_model", "describe", "describe_setup", "load_data",
    "make_spec", "method_specs", "nominal_flops", "period_specs", "run", "run_many",
    "sensitivity_specs", "MEMORY_NETWORKS", "conv_stack", "memory_network", "peak_memory",
]

#: Name (and format version) of these runs in the results cache.
EXPERIMENT = "swat/run-v1"

#: Training methods of the accuracy-vs-FLOPs comparison (SPEC §6), in table order.
METHODS = tuple(REGISTRY)

#: The four one-thing-at-a-time variants of paper Fig. 2 (``swat-u`` with these modes).
SENSITIVITY_MODES = ("fwd-weights", "fwd-activations", "bwd-weights-activations",
                     "bwd-output-grad")

#: Readable names of the methods.
METHOD_LABELS = {name: m.label for name, m in REGISTRY.items()}

#: Readable names of the sensitivity variants (paper Fig. 2's legends).
MODE_LABELS = {"swat": "SWAT (fwd W, bwd W+A)",
               "fwd-weights": "forward: sparse weights",
               "fwd-activations": "forward: sparse activations",
               "bwd-weights-activations": "backward: sparse weights + activations",
               "bwd-output-grad": "backward: sparse output gradient"}

#: Datasets the SWAT runs take, with the image shape the networks see.
DATASETS = {"fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def _model_config(model: str, width: int, batchnorm: bool, sizes: Sequence[int],
                  dataset: str = "fashion-mnist") -> dict[str, Any]:
    if model == "cnn":
        return {"name": "small-cnn", "width": check_int(width, "width"), "batchnorm": bool(batchnorm)}
    if model == "mlp":
        sizes = [int(s) for s in sizes]
        features = math.prod(DATASETS[dataset])
        if len(sizes) < 2 or sizes[0] != features or sizes[-1] != 10:
            raise ValueError(f"MLP sizes must run from {features} to 10 for {dataset}, got {sizes}")
        return {"name": "mlp", "sizes": sizes, "activation": "relu", "dropout": 0.0}
    raise ValueError(f"model must be 'cnn' or 'mlp', got {model!r}")


def make_spec(method: str, density: float = 1.0, *, mode: str = "swat", period: int = 1,
              model: str = "cnn", width: int = 8, batchnorm: bool = True,
              sizes: Sequence[int] = (784, 300, 100, 10), subset: Any = (4000, 2000),
              epochs: int = 4, batch_size: int = BATCH_SIZE, lr: float = 0.05,
              momentum: float = MOMENTUM, weight_decay: float = WEIGHT_DECAY,
              schedule: str = SCHEDULE, rigl_delta_t: int = RIGL_DELTA_T, seed: int = 0,
              profile: str = "quick",
              dataset: str = "fashion-mnist") -> dict[str, Any]:
    """The full, canonical config of one training run (the results-cache key).

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    density : float
        Kept fraction in (0, 1] (sparsity = 1 − density); forced to 1 for ``dense``. For
        ``meprop`` the density of the output gradient.
    mode : str
        SWAT-U only: ``"swat"`` or one of :data:`SENSITIVITY_MODES`.
    period : int
        Steps between Top-K threshold recomputations (SWAT and meProp).
    model : {"cnn", "mlp"}
        :class:`SmallCNN` (``width``, ``batchnorm``) or a ReLU :class:`MLP` (``sizes``).
    subset : int, pair or None
        Training images (and test images, for a pair); None for the whole dataset.
    epochs, batch_size, lr, momentum, weight_decay, schedule
        SGD settings; ``schedule`` is ``"cosine"`` (decay to 0 over the run) or ``"constant"``.
    rigl_delta_t : int
        Steps between RigL topology updates (RigL's ΔT).
    seed, profile
        The trial's seed and the profile that asked for it (part of the key).
    dataset : {"fashion-mnist", "cifar10"}
        The data; the same networks take CIFAR-10's 3×32×32 images (SmallCNN's global pooling
        makes it size-agnostic; the MLP's first size must then be 3072).

    Raises
    ------
    ValueError
        For an unknown method / mode / model / schedule, or a bad density or period.
    """
    chosen = get_method(method)
    check_choice(mode, MODES, "mode")
    if mode != "swat" and not chosen.sensitivity_modes:
        raise ValueError(f"mode {mode!r} is a SWAT-U sensitivity variant; method was {method!r}")
    check_choice(dataset, DATASETS, "dataset")
    check_choice(schedule, ("cosine", "constant"), "schedule")
    density = check_density(density)
    period = check_int(period, "period")
    return {
        "experiment": EXPERIMENT,
        "dataset": dataset,
        "subset": list(subset) if isinstance(subset, (list, tuple)) else subset,
        "model": _model_config(model, width, batchnorm, sizes, dataset),
        "method": method,
        "density": round(density, 6) if chosen.sparse else 1.0,
        "mode": mode if chosen.swat else None,
        "period": period if chosen.topk_period else None,
        "first_layer_dense": chosen.first_layer_dense,
        "topology": chosen.topology(rigl_delta_t),
        "optimizer": {"name": "sgd", "momentum": float(momentum),
                      "weight_decay": float(weight_decay), "schedule": schedule},
        "lr": float(lr),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "profile": profile,
    }


def method_specs(methods: Iterable[str], densities: Iterable[float], seeds: Iterable[int],
                 **setup: Any) -> list[dict[str, Any]]:
    """Every method at every density and seed (dense once per seed), for notebook 31."""
    densities, specs = list(densities), []
    for seed in check_seeds(seeds):
        for method in methods:
            for density in (densities if get_method(method).sparse else [1.0]):
                specs.append(make_spec(method, density, seed=seed, **setup))
    return specs


def sensitivity_specs(modes: Iterable[str], sparsities: Iterable[float], seeds: Iterable[int],
                      **setup: Any) -> list[dict[str, Any]]:
    """Paper Fig. 2: SWAT-U in each mode at each sparsity (%), plus dense, per seed."""
    sparsities, specs = list(sparsities), []
    for seed in check_seeds(seeds):
        specs.append(make_spec("dense", seed=seed, **setup))
        for mode in modes:
            for sparsity in sparsities:
                specs.append(make_spec("swat-u", density_of_sparsity_percent(sparsity, "sparsities"), mode=mode,
                                       seed=seed, **setup))
    return specs


def period_specs(periods: Iterable[int], density: float, seeds: Iterable[int],
                 **setup: Any) -> list[dict[str, Any]]:
    """SWAT-U (mode ``swat``) at one density with each Top-K recompute period, per seed."""
    return [make_spec("swat-u", density, period=int(p), seed=seed, **setup)
            for seed in check_seeds(seeds) for p in periods]


class RunResult(runs.RunResult):
    """One finished (or cached) run: its spec and the JSON result (no tensors)."""

    @property
    def test_acc(self) -> float:
        """Test accuracy after the last epoch."""
        return self.result["test_acc"]


def load_data(spec: dict[str, Any]):
    """The spec's dataset as its model takes it (memoised within the process)."""
    return runs.load_dataset(spec["dataset"], spec["subset"], flatten=spec["model"]["name"] == "mlp")


def build_model(spec: dict[str, Any]) -> nn.Module:
    """The untrained *dense* network of ``spec``, drawn from the spec's seed."""
    m = spec["model"]
    with torch.random.fork_rng():
        torch.manual_seed(spec["seed"])
        if m["name"] == "small-cnn":
            return SmallCNN(DATASETS[spec["dataset"]][0], width=m["width"], batchnorm=m["batchnorm"])
        return MLP(m["sizes"], activation=m["activation"], dropout=m["dropout"],
                   init="he_uniform", generator=torch.Generator().manual_seed(spec["seed"]))


def _input_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    shape = DATASETS[spec["dataset"]]
    return shape if spec["model"]["name"] == "small-cnn" else (math.prod(shape),)


def nominal_flops(spec: dict[str, Any], steps_per_epoch: int) -> dict[str, float] | None:
    """Cost-model FLOPs per training example (conv/linear; with extras) of the spec's method.

    None for the sensitivity variants, which have no cost-model method.
    """
    if spec["mode"] not in (None, "swat"):
        return None
    table = layer_table(build_model(spec).to("meta"), _input_shape(spec))
    topology = spec["topology"] or {}
    options = MethodOptions(topk=TopKCost(period=spec["period"] or 1),
                            rigl_delta_t=topology.get("delta_t", RIGL_DELTA_T),
                            set_period=max(1, steps_per_epoch))
    batch = spec["batch_size"]
    ledger = nominal_ledger(table, plan(table, spec["method"], spec["density"], batch_size=batch,
                                        options=options), batch)
    dense = nominal_ledger(table, plan(table, "dense", 1.0, batch_size=batch), batch)
    return {"training": ledger.training_flops() / batch,
            "training_with_extras": ledger.training_flops(include_extras=True) / batch,
            "dense_training": dense.training_flops() / batch}


class _TrainingLedger:
    """What ``fit`` expects as ``ledger``: the MeasuredLedger *and* its watch hooks on plain
    layers, both active only during training batches (a watch held across ``fit`` would also
    record the evaluation passes, which run outside the ledger's ``with`` block)."""

    def __init__(self, ledger: MeasuredLedger, model: nn.Module) -> None:
        self.ledger, self.model = ledger, model
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> _TrainingLedger:
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.ledger)
        self._stack.enter_context(self.ledger.watch(self.model))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stack is not None
        self._stack.close()

    def end_step(self, batch_size: int) -> None:
        self.ledger.end_step(batch_size)


def _layer_densities(model: nn.Module) -> dict[str, float]:
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, SWATLayer):
            out[name] = float(module.density)
        elif hasattr(module, "topology_mask"):
            out[name] = float(module.topology_mask.float().mean())
    return out


def _compute(spec: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    data = load_data(spec)
    model = build_model(spec)
    opt = spec["optimizer"]
    optimizer = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=opt["momentum"],
                                weight_decay=opt["weight_decay"])
    steps_per_epoch = math.ceil(len(data.x_train) / spec["batch_size"])
    topology = REGISTRY[spec["method"]].prepare(spec, model, optimizer, steps_per_epoch)
    after_step = None
    if opt["schedule"] == "cosine":
        after_step = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=steps_per_epoch * spec["epochs"]).step

    ledger = MeasuredLedger()
    label = describe(spec)
    wall = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(spec["seed"])
        history = fit(model, data, optimizer, epochs=spec["epochs"],
                      batch_size=spec["batch_size"],
                      generator=torch.Generator().manual_seed(spec["seed"]), label=label,
                      log=log, topology=topology, after_step=after_step,
                      ledger=_TrainingLedger(ledger, model))
    wall = time.perf_counter() - wall
    measured = ledger.ledger()
    per = 1.0 / measured.batch_size
    phases = ("forward", "input_grad", "weight_grad")
    flops = {
        "measured": measured.training_flops() * per,
        "measured_with_extras": measured.training_flops(include_extras=True) * per,
        "measured_phases": {p: 2.0 * measured.macs((p,)) * per for p in phases},
        "dense_arithmetic": 2.0 * measured.dense_macs() * per,
    }
    nominal = nominal_flops(spec, steps_per_epoch)
    if nominal is not None:
        flops.update({"nominal": nominal["training"],
                      "nominal_with_extras": nominal["training_with_extras"],
                      "nominal_dense": nominal["dense_training"]})
    return {
        "history": history,
        "test_acc": history[-1]["test_acc"],
        "best_test_acc": max(r["test_acc"] for r in history),
        "train_acc": history[-1]["train_acc"],
        "flops": flops,
        "flops_basis": REGISTRY[spec["method"]].flops_basis,
        "steps": measured.steps,
        "layer_densities": _layer_densities(model),
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "dataset_name": data.name,
        "train_seconds": sum(r["seconds"] for r in history),
        "wall_seconds": wall,
        "threads": torch.get_num_threads(),
    }


def describe(spec: dict[str, Any]) -> str:
    """One-line label of a run, e.g. ``"SWAT-U d=0.2 (forward: sparse weights) seed 0"``."""
    name = METHOD_LABELS[spec["method"]]
    if REGISTRY[spec["method"]].sparse:
        name += f" d={spec['density']:g}"
    if spec["mode"] not in (None, "swat"):
        name += f" [{spec['mode']}]"
    if spec["period"] not in (None, 1):
        name += f" period {spec['period']}"
    return f"{name} seed {spec['seed']}"


def describe_setup(spec: dict[str, Any]) -> str:
    """The network and data of a spec in words, for figure notes."""
    m = spec["model"]
    if m["name"] == "small-cnn":
        net = f"SmallCNN width {m['width']}" + ("" if m["batchnorm"] else " no BN")
    else:
        net = "MLP " + "-".join(map(str, m["sizes"]))
    subset, name = spec["subset"], DATASET_NAMES[spec["dataset"]]
    if subset is None:
        data = f"full {name}"
    elif isinstance(subset, list):
        data = f"{name} {subset[0]} train / {subset[1]} test"
    else:
        data = f"{name} {subset} train"
    epochs = spec["epochs"]
    return f"{net}, {data}, {epochs} epoch{'' if epochs == 1 else 's'}"


#: How SWAT runs are computed and reported (:mod:`~swatlib.experiments.runs`). A missing dataset
#: is an error, and no run is timed: the notebooks report accuracy and FLOPs, not seconds.
FAMILY = runs.Family(compute=_compute, describe=describe, result_type=RunResult)


def run(spec: dict[str, Any], *, log: Callable[[str], None] = print) -> RunResult:
    """Train ``spec`` or fetch it from the results cache."""
    return runs.run(FAMILY, spec, log=log)


def run_many(specs: Iterable[dict[str, Any]], *, log: Callable[[str], None] = print,
             jobs: int | str | None = None) -> list[RunResult]:
    """Every spec's result in order, duplicates run once, ``jobs`` worker processes
    (:func:`swatlib.experiments.runs.run_many`; None: ``$SWATLIB_JOBS``, default 1)."""
    return runs.run_many(FAMILY, specs, log=log, jobs=jobs)


#: Networks of the peak-memory measurements: name -> (conv layers of the plain stack, or None
#: for SmallCNN; default width).
MEMORY_NETWORKS = {"smallcnn": (None, 32), "conv4": (4, 64), "conv12": (12, 64)}


def conv_stack(depth: int, *, width: int = 64, density: float = 1.0, seed: int = 0,
               image: tuple[int, int, int] = (1, 28, 28), classes: int = 10) -> nn.Sequential:
    """The plain conv + ReLU stack of the peak-memory measurements (notebook ``32``, benchmark).

    ``Conv 1→16→width→…→width`` (``depth`` convs, 3×3, padding 1, a ReLU after each), flattened
    into one ``Linear(width·H·W → classes)``: no pooling and no BatchNorm, so every layer keeps
    the full image size and SWAT compresses everything a step saves. Initialised from ``seed``;
    ``density < 1`` swatifies it (SWAT-U, first layer dense). Module-level and picklable with
    ``functools.partial``, for :func:`swatlib.swat.step_peak`'s fresh process.
    """
    check_int(depth, "depth (conv layers)", 2)
    channels = [image[0], 16] + [width] * (depth - 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Flatten(),
                              nn.Linear(channels[-1] * image[1] * image[2], classes))
    return model if density >= 1.0 else swatify(model, density=density)


def memory_network(network: str, density: float = 1.0, *, width: int | None = None,
                   seed: int = 0) -> nn.Module:
    """A network of :data:`MEMORY_NETWORKS`, initialised from ``seed``, SWAT-U at ``density < 1``.

    ``"smallcnn"`` is :class:`~swatlib.models.SmallCNN` (BatchNorm, max-pooling); ``"conv4"`` and
    ``"conv12"`` are :func:`conv_stack` of 4 and 12 convs. ``width`` defaults to the network's
    (32 and 64). Picklable with ``functools.partial``, for :func:`swatlib.swat.step_peak`.
    """
    depth, default_width = MEMORY_NETWORKS[check_choice(network, MEMORY_NETWORKS, "network")]
    width = default_width if width is None else width
    if depth is not None:
        return conv_stack(depth, width=width, density=density, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SmallCNN(width=width)
    return model if density >= 1.0 else swatify(model, density=density)


def _predicted_saved_bytes(network: str, density: float, batch_size: int) -> int:
    """The cost model's saved-for-backward bytes (bitmap index) of ``network`` under SWAT-U."""
    table = layer_table(memory_network(network).to("meta"), input_shape=(1, 28, 28))
    plans = plan(table, "swat-u" if density < 1.0 else "dense", density, batch_size=batch_size)
    report = backward_memory(
        table, batch_size=batch_size,
        weight_density={p.layer.name: p.weight_density for p in plans},
        activation_density={p.layer.name: p.saved_act_density for p in plans})
    return report.activation_bytes + report.weight_bytes


def peak_memory(networks: Sequence[str], densities: Sequence[float], *, batch_size: int,
                threads: int = 1, seed: int = 0,
                log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Peak memory of a training step vs saved-for-backward bytes, dense and SWAT-U, measured.

    The step trains on the first ``batch_size`` Fashion-MNIST training images and labels.
    One row per (network, density): ``peak_bytes`` (:func:`swatlib.swat.step_peak`, a fresh
    process per row), ``forward_peak_bytes``, ``graph_bytes``, ``saved_bytes`` (the meter),
    ``predicted_saved_bytes`` (the cost model, bitmap index), and the reductions (%) of the
    peak, of the saved bytes and of the prediction against the same network's dense row
    (density 1 is always measured).
    """
    data = runs.load_dataset("fashion-mnist", max(check_int(batch_size, "batch_size"), 1000), flatten=False)
    x, y = data.x_train[:batch_size].clone(), data.y_train[:batch_size].clone()
    rows = []
    for network in networks:
        for density in [1.0, *[d for d in densities if d < 1.0]]:
            if log:
                log(f"{network}, density {density:g}: peak of a training step")
            build = functools.partial(memory_network, network, density, seed=seed)
            peak = step_peak(build, x, y, threads=threads)
            rows.append({"network": network, "conv_layers": MEMORY_NETWORKS[network][0],
                         "density": density, "sparsity": round(100 * (1 - density), 4),
                         "peak_bytes": peak.step, "forward_peak_bytes": peak.forward,
                         "graph_bytes": peak.graph, "saved_bytes": peak.saved.total,
                         "predicted_saved_bytes": _predicted_saved_bytes(network, density, len(x))})
    table = pd.DataFrame(rows)
    dense = table[table.density == 1.0].set_index("network")
    for kind in ("peak", "saved", "predicted_saved"):
        reference = table.network.map(dense[f"{kind}_bytes"])
        table[f"{kind}_reduction"] = 100 * (1 - table[f"{kind}_bytes"] / reference)
    return table
