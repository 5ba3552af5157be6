"""The experiment behind ``50_toy_bert_sparsity`` (seed 002, SPEC §8): dynamic sparsity on a toy BERT.

A :class:`~swatlib.models.ToyBERT` learns masked-language modelling on WordNet 3.0 glosses
(:mod:`swatlib.data.wordnet`: sentencepiece unigram tokens, the frozen "self-pre-trained (PPMI-SVD on
the same corpus)" input embedding). The dense run trains a fixed number of steps; its held-out loss
at 25 / 50 / 75 / 100 % of them are the *targets*. Every variant — RigL, SET, gradual magnitude
pruning, and the new idea, on every encoder linear or the feed-forward ones only — trains until its
held-out loss reaches the lowest target (the dense run's final loss, unless the dense curve rose at the
end; same seed) or up to a cap, and is scored by the steps, FLOPs (:mod:`swatlib.costmodel.transformer`)
and time it needs to reach each target, interpolated linearly between evaluations. Stopping there
changes no score: a run's history is a prefix of the capped run's, and the first evaluation at or below
the lowest target is at or past every target's first crossing.

Three clocks, kept apart:

* **FLOPs** from the ledger, step by step with the densities the layers really had (the measured
  ledger), RigL's dense-gradient growth steps included; "dense-equivalent minutes" = FLOPs ÷ the
  dense step's FLOPs × the dense step's measured seconds;
* the seed proposal's **net time**, as it defines it: training time × average density of the sparse
  layers (here the training time of the masked run is its steps × the measured dense step time, which
  is what masking costs on dense hardware). Only the sparsifiable layers' share of the FLOPs can
  shrink, so the net time is optimistic beside the FLOP figure;
* **real CPU time with truly sparse layers**: steps × the seconds per step measured alone on one
  thread (timing runs, :attr:`Family.is_timed`) with :class:`~swatlib.sparse.SparseLinear` layers.

The new idea, **densifying RigL** (``rigl-densify``): RigL whose density *grows* linearly from
``initial_density`` to ``density`` until ``t_end``, new connections placed at random with weight 0
(:class:`swatlib.topology.Densify`). Early training, while the loss falls fast from any model, runs on fewer FLOPs; the
capacity comes when the loss needs it. Its closest relative found (growth-only sparse-to-dense
training, Yao & Dovrolis, arXiv 2509.25665) grows without RigL's drop-and-grow and to discover a
density, not to reach a loss sooner; the notebook states how this was checked.

**SWAT** (``swat``, paper profile): the encoder linears become :class:`~swatlib.swat.SWATLinear` layers
— dense weights, Top-K weights forward, Top-K weights and activations backward, every weight updated
(SPEC §5) — so the ledger counts its products at the density, AdamW over every weight and the Top-K
selections (:func:`~swatlib.costmodel.transformer.transformer_ledger`'s ``topk``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import torch

from swatlib.cache import ResultsCache
from swatlib.checks import check_choice, check_int, check_seeds
from swatlib.costmodel.transformer import (model_densities, model_shape, model_topk, rigl_growth_flops,
                                           transformer_ledger)
from swatlib.data import wordnet
from swatlib.densities import check_density, distribute
from swatlib.experiments.runs import Family, RunResult, run_many
from swatlib.models.toy_bert import MaskedLM, ToyBERT, sparsify
from swatlib.topology import SET, Densify, GradualMagnitudePruning, RigL
from swatlib.train import fit, train_step, use_threads

__all__ = ["FAMILY", "METHODS", "TARGET_FRACTIONS", "Prepared", "against_reference", "average_density", "build_run",
           "build_specs", "net_time_table",
           "prepare", "run_all", "steps_to_targets", "time_steps", "train_run"]

#: Sparse-training methods (besides ``dense``); ``swat`` keeps dense weights and Top-K's them every step.
METHODS = ("rigl", "set", "gmp", "rigl-densify", "swat")
#: Fractions of the dense run's steps whose held-out loss are the targets.
TARGET_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


# ------------------------------------------------------------------------------------------ data
@dataclasses.dataclass(frozen=True)
class Prepared:
    """Token windows, the frozen embedding and what the notebook prints about them."""

    train: torch.Tensor
    held_out: torch.Tensor
    embedding: torch.Tensor
    embedding_flops: float
    embedding_seconds: float
    unigram_entropy: float
    vocab_size: int
    glosses: tuple[int, int]
    tokens: tuple[int, int]
    source: str


@functools.lru_cache(maxsize=2)
def prepare(vocab_size: int, seq: int, width: int, max_glosses: int | None, held_out_windows: int) -> Prepared:
    """Corpus → tokenizer → windows → PPMI-SVD embedding, each derived artefact cached under the corpus hash.

    ``max_glosses`` keeps the first that many training glosses (and a twentieth as many held-out
    ones) for the smoke profile; None keeps all.
    """
    corpus = wordnet.load_wordnet()
    if max_glosses is not None:
        corpus = dataclasses.replace(
            corpus, train=corpus.train[:max_glosses], held_out=corpus.held_out[:max(1, max_glosses // 20)],
            digest=hashlib.sha256(f"{corpus.digest}:first {max_glosses}".encode()).hexdigest())
    tokenizer = wordnet.train_tokenizer(corpus, vocab_size=vocab_size)
    train_ids, held_ids = wordnet.encode(tokenizer, corpus.train), wordnet.encode(tokenizer, corpus.held_out)
    config = {"artefact": "wordnet-ppmi-svd", "corpus": corpus.digest, "vocab_size": vocab_size, "width": width,
              "window": 4, "svd_iterations": wordnet.SVD_ITERATIONS}

    def compute():
        start = time.perf_counter()
        embedding, flops = wordnet.ppmi_svd_embedding(train_ids, vocab_size, width, window=4)
        return {"flops": flops, "seconds": time.perf_counter() - start}, {"embedding": embedding}

    entry = ResultsCache().get_or_compute(config, compute)
    return Prepared(
        train=wordnet.pack(train_ids, seq), held_out=wordnet.pack(held_ids, seq)[:held_out_windows],
        embedding=entry.tensors["embedding"], embedding_flops=entry.result["flops"],
        embedding_seconds=entry.result["seconds"], unigram_entropy=wordnet.unigram_entropy(train_ids, vocab_size),
        vocab_size=vocab_size, glosses=(len(corpus.train), len(corpus.held_out)),
        tokens=(sum(map(len, train_ids)), sum(map(len, held_ids))), source=corpus.source)


def prepared_for(spec: dict[str, Any]) -> Prepared:
    """:func:`prepare` with a spec's corpus settings."""
    c = spec["corpus"]
    return prepare(c["vocab"], c["seq"], spec["model"]["width"], c["max_glosses"], c["held_out_windows"])


# ------------------------------------------------------------------------------------------ one run
def build_run(spec: dict[str, Any], prepared: Prepared):
    """``(model, task, optimizer, scheduler, topology, generator)`` of a spec: what :func:`train_run`
    trains or times (public so that ``benchmarks/toy_bert.py`` times the study's own models)."""
    m, t = spec["model"], spec["train"]
    generator = torch.Generator().manual_seed(spec["seed"])
    model = ToyBERT(prepared.vocab_size, width=m["width"], depth=m["depth"], heads=m["heads"], ffn=m["ffn"],
                    max_seq=spec["corpus"]["seq"], embedding=prepared.embedding, generator=generator)
    task = MaskedLM(prepared.train, prepared.held_out, vocab_size=prepared.vocab_size, mask_id=wordnet.MASK_ID,
                    steps_per_epoch=t["eval_every"])
    method = spec["method"]
    layers = []
    if method != "dense":
        names = list(model.encoder_linears(spec["layers"]))
        shapes = [tuple(model.encoder_linears()[n].weight.shape) for n in names]
        start = {"gmp": 1.0, "rigl-densify": spec.get("initial_density")}.get(method, spec["density"])
        densities = distribute(shapes, start, spec["distribution"])
        layers = sparsify(model, dict(zip(names, densities)), kind=spec["kind"], generator=generator)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t["lr"],
                                  weight_decay=t["weight_decay"])
    warmup = t["warmup"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    t_end = int(spec["t_end"] * t["steps"]) if method != "dense" else 0
    topology: list[Any] = []
    if method in ("rigl", "rigl-densify"):
        topology.append(RigL(layers, t_end=t_end, delta_t=spec["delta_t"], alpha=spec["alpha"], optimizer=optimizer))
    if method == "rigl-densify":
        topology.append(Densify(layers, final_density=spec["density"], t_end=t_end, delta_t=spec["delta_t"],
                                optimizer=optimizer, generator=torch.Generator().manual_seed(spec["seed"] + 1)))
    if method == "gmp":
        topology.append(GradualMagnitudePruning(layers, final_density=spec["density"], t_start=spec["delta_t"],
                                                t_end=t_end, delta_t=spec["delta_t"], optimizer=optimizer))
    if method == "set":
        topology.append(SET(layers, zeta=spec["alpha"], until=t_end // t["eval_every"], optimizer=optimizer,
                            generator=torch.Generator().manual_seed(spec["seed"] + 1)))
    return model, task, optimizer, scheduler, topology, generator


def _sparse_fraction(model, densities: dict[str, float]) -> float:
    """Weight-count-weighted density of all encoder linears (dense ones count 1)."""
    linears = model.encoder_linears()
    sizes = {name: layer.in_features * layer.out_features for name, layer in linears.items()}
    return sum(densities.get(name, 1.0) * size for name, size in sizes.items()) / sum(sizes.values())


def train_run(spec: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Train one spec (or, for a timing spec, time its steps); the JSON-able result."""
    use_threads(spec["train"]["threads"])
    prepared = prepared_for(spec)
    model, task, optimizer, scheduler, topology, generator = build_run(spec, prepared)
    t = spec["train"]
    if spec["timing"]:
        return time_steps(spec, model, task, optimizer, scheduler, topology, generator)
    rigl = next((a for a in topology if isinstance(a, RigL)), None)
    batch, every = t["batch"], t["eval_every"]
    history = [{"step": 0, "test_loss": task.evaluate(model)["test_loss"], "flops": 0.0,
                "density": _sparse_fraction(model, model_densities(model))}]
    state = {"densities": model_densities(model), "picked": 0, "flops": 0.0}
    topk = model_topk(model)  # SWAT's selection cost (None for the other methods); fixed for the run

    def on_epoch_end(epoch: int) -> None:
        masked = (task.picked - state["picked"]) / every
        shape = model_shape(model, batch, masked)
        ledger = transformer_ledger(shape, state["densities"], topk=topk)
        flops = ledger.training_flops(include_extras=True) * every
        if rigl is not None:
            growth_steps = sum(rigl.due(s) for s in range((epoch - 1) * every + 1, epoch * every + 1))
            flops += growth_steps * rigl_growth_flops(shape, state["densities"])
        state["flops"] += flops
        record = {"step": epoch * every, "flops": state["flops"],
                  "density": _sparse_fraction(model, state["densities"])}
        state["picked"], state["densities"] = task.picked, model_densities(model)
        history.append(record)

    stop_loss = spec.get("stop_loss")
    records = fit(model, task, optimizer, epochs=t["steps"] // every, batch_size=batch, generator=generator,
                  label=describe(spec), log=log, topology=topology, on_epoch_end=on_epoch_end,
                  after_step=scheduler.step,
                  stop_when=None if stop_loss is None else lambda record: record["test_loss"] <= stop_loss)
    for record, fitted in zip(history[1:], records):
        record.update(test_loss=fitted["test_loss"], seconds=fitted["seconds"])
    dense_shape = model_shape(model, batch, task.picked / t["steps"])
    return {"history": history, "final_densities": model_densities(model),
            "dense_step_flops": transformer_ledger(dense_shape).training_flops(include_extras=True),
            "embedding_flops": prepared.embedding_flops}


def time_steps(spec, model, task, optimizer, scheduler, topology, generator) -> dict[str, Any]:
    """Seconds per training step, measured over ``timing_steps`` steps after ``timing_warmup`` ones
    (RigL's growth steps included at their share when ``delta_t`` divides the window), and the
    1-minute load average at the end (the measurement is only meaningful on an idle machine)."""
    t = spec["train"]
    warm, steps = t["timing_warmup"], t["timing_steps"]
    task.steps_per_epoch = warm + steps
    batches = task.batches(t["batch"], generator)
    for _ in range(warm):
        train_step(model, task, next(batches), optimizer, topology=topology, after_step=scheduler.step)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, task, next(batches), optimizer, topology=topology, after_step=scheduler.step)
    seconds = (time.perf_counter() - start) / steps
    return {"seconds_per_step": seconds, "density": _sparse_fraction(model, model_densities(model)),
            "load_average": os.getloadavg()[0]}


def describe(spec: dict[str, Any]) -> str:
    """One-line name of a run."""
    if spec["method"] == "dense":
        name = "dense"
    else:
        name = f"{spec['method']} d={spec['density']:g}"
        if spec["method"] == "rigl-densify":
            name = f"rigl-densify d={spec['initial_density']:g}→{spec['density']:g}"
        if spec["distribution"] != "uniform":
            name += f" {spec['distribution']}"
        if spec["layers"] != "all":
            name += f" {spec['layers']} only"
    if spec["timing"]:
        name += " [timing]" if spec["method"] == "dense" else f" [timing, {spec['kind']}]"
    return f"{name} (seed {spec['seed']})"


FAMILY = Family(compute=train_run, describe=describe, result_type=RunResult,
                is_timed=lambda spec: bool(spec["timing"]))


# ------------------------------------------------------------------------------------------ specs
def build_specs(*, profile: str, seeds: Sequence[int], variants: Sequence[dict[str, Any]], corpus: dict[str, Any],
                model: dict[str, Any], train: dict[str, Any], cap: float, kind: str,
                timing_variants: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The dense, variant and timing specs of a profile.

    Parameters
    ----------
    variants
        Each a dict with ``method`` and its settings (``density``, ``distribution``, ``layers``,
        ``initial_density``...); missing settings take RigL's defaults (ΔT 100, α 0.3, end at 0.75).
    cap
        Variants train at most ``cap ×`` the dense steps (:func:`run_all` stops each one earlier, at
        the lowest target).
    kind
        Layer kind of the training runs (``masked`` or ``sparse``; equal trajectories); ``swat``
        variants always use SWAT layers.
    timing_variants
        Variants whose step time is measured with truly sparse layers (plus dense).

    Raises
    ------
    ValueError
        For no seed or a negative one, an unknown kind or method, a density outside (0, 1], a
        densifying variant whose ``initial_density`` is missing or above its ``density``, or a cap
        that leaves the variants less than one evaluation interval — before anything trains.
    """
    seeds = check_seeds(seeds)
    check_choice(kind, ("masked", "sparse"), "kind")
    for name in ("steps", "eval_every"):
        check_int(train[name], f"train: {name}")
    if (isinstance(cap, bool) or not isinstance(cap, Real) or not math.isfinite(cap)
            or cap * train["steps"] < train["eval_every"]):
        raise ValueError(f"cap must be a finite number with cap × steps >= eval_every ({train['eval_every']}), "
                         f"got {cap!r}")
    for variant in [*variants, *timing_variants]:
        check_choice(variant.get("method"), METHODS, "variants: method")
        check_density(variant.get("density"), "variants: density")
        if variant["method"] == "rigl-densify" and not (
                0 < variant.get("initial_density", 0) <= variant["density"]):
            raise ValueError(f"variants: rigl-densify needs 0 < initial_density <= density, got {variant}")
    defaults = dict(experiment="toy-bert", dataset="wordnet", profile=profile, corpus=corpus, model=model,
                    kind=kind, distribution="uniform", layers="all", delta_t=100, alpha=0.3, t_end=0.75,
                    density=1.0, timing=False)
    capped = dict(train, steps=int(round(cap * train["steps"] / train["eval_every"])) * train["eval_every"])
    specs: dict[str, list[dict[str, Any]]] = {"dense": [], "variants": [], "timing": []}
    for seed in seeds:
        specs["dense"].append(dict(defaults, method="dense", train=train, seed=seed))
        for variant in variants:
            variant_kind = "swat" if variant["method"] == "swat" else kind
            specs["variants"].append(dict(defaults, train=capped, seed=seed, **dict(variant, kind=variant_kind)))
    for variant in [{"method": "dense"}, *timing_variants]:
        timing_kind = {"dense": kind, "swat": "swat"}.get(variant["method"], "sparse")
        specs["timing"].append(dict(defaults, train=train, seed=seeds[0], timing=True,
                                    **dict(variant, kind=timing_kind)))
    return specs


def run_all(specs: dict[str, list[dict[str, Any]]], *, log: Callable[[str], None] = print,
            jobs: int | str | None = None) -> dict[str, list[RunResult]]:
    """Every run of the study through the results cache (training runs in parallel, timing runs alone).

    The dense runs train first; each variant then gets ``stop_loss``, the lowest of its seed's targets
    (:func:`targets_of`; the dense final loss unless the dense curve rose at the end), and stops at
    the first evaluation that reaches it — nothing after that point enters any score — or at the cap.
    So the variants' specs in the result carry ``stop_loss``.
    """
    dense = run_many(FAMILY, specs["dense"], log=log, jobs=jobs)
    stop_loss = {run.spec["seed"]: min(targets_of(run.result["history"]).values()) for run in dense}
    variants = [dict(spec, stop_loss=stop_loss[spec["seed"]]) for spec in specs["variants"]]
    rest = run_many(FAMILY, [*variants, *specs["timing"]], log=log, jobs=jobs)
    return {"dense": dense, "variants": rest[:len(variants)], "timing": rest[len(variants):]}


# ------------------------------------------------------------------------------------------ analysis
def _crossing(history: list[dict[str, Any]], target: float, key: str) -> float | None:
    """``key`` (step or flops) where the held-out loss first reaches ``target``, linearly interpolated
    between the two evaluations around the crossing; None if it never does."""
    for before, after in zip(history, history[1:]):
        if after["test_loss"] <= target:
            if before["test_loss"] <= target:
                return float(before[key])
            w = (before["test_loss"] - target) / (before["test_loss"] - after["test_loss"])
            return before[key] + w * (after[key] - before[key])
    return None


def targets_of(dense_history: list[dict[str, Any]], fractions: Sequence[float] = TARGET_FRACTIONS) -> dict[float, float]:
    """The dense run's held-out loss at each fraction of its steps (at the evaluation nearest below)."""
    last = dense_history[-1]["step"]
    out = {}
    for f in fractions:
        at = max((h for h in dense_history if h["step"] <= f * last), key=lambda h: h["step"])
        out[f] = at["test_loss"]
    return out


def average_density(history: list[dict[str, Any]], steps: float) -> float:
    """Mean density of the encoder linears over the first ``steps`` steps (each evaluation record
    holds the density of the interval that ends at it)."""
    if steps <= 0:
        return history[0]["density"]
    total = 0.0
    for before, after in zip(history, history[1:]):
        total += max(0.0, min(after["step"], steps) - before["step"]) * after["density"]
    return total / steps


def steps_to_targets(history: list[dict[str, Any]], targets: dict[float, float]) -> list[dict[str, Any]]:
    """Per target: steps and FLOPs to reach it (None = not within the cap), and the average density of
    the encoder linears over those steps."""
    rows = []
    for fraction, target in targets.items():
        steps = _crossing(history, target, "step")
        flops = _crossing(history, target, "flops")
        density = None if steps is None else average_density(history, steps)
        rows.append({"target_fraction": fraction, "target_loss": target, "steps": steps, "flops": flops,
                     "average_density": density})
    return rows


def net_time_table(results: dict[str, list[RunResult]], fractions: Sequence[float] = TARGET_FRACTIONS):
    """The study's table: one row per (variant, seed, target), all three clocks; ``inf`` where the
    target was not reached within the cap.

    Columns: ``variant``, ``seed``, ``target`` (fraction of the dense steps), ``target_loss``, ``steps``,
    ``gflops`` (ledger), ``dense_equivalent_min`` (FLOPs ÷ dense step FLOPs × dense step seconds),
    ``net_time_min`` (the proposal's: steps × dense step seconds × average density),
    ``wall_time_dense_hw_min`` (steps × dense step seconds), ``cpu_sparse_min`` (steps × measured
    truly sparse step seconds, where a timing run of that variant exists), ``average_density``.
    """
    import pandas as pd

    timing = {describe(dict(r.spec, seed=0, timing=False)): r.result["seconds_per_step"] for r in results["timing"]}
    dense_seconds = timing[describe(dict(results["timing"][0].spec, seed=0, timing=False))]
    rows = []
    for dense in results["dense"]:
        targets = targets_of(dense.result["history"], fractions)
        dense_step_flops = dense.result["dense_step_flops"]
        for run in [dense, *results["variants"]]:
            if run.spec["seed"] != dense.spec["seed"]:
                continue
            name = describe(dict(run.spec, seed=0))
            sparse_seconds = timing.get(name)
            for row in steps_to_targets(run.result["history"], targets):
                reached = row["steps"] is not None
                steps = row["steps"] if reached else math.inf
                density = row["average_density"] if reached else math.nan
                rows.append({
                    "variant": name.removesuffix(" (seed 0)"), "seed": run.spec["seed"],
                    "target": row["target_fraction"], "target_loss": row["target_loss"], "steps": steps,
                    "gflops": row["flops"] / 1e9 if reached else math.inf,
                    "dense_equivalent_min": row["flops"] / dense_step_flops * dense_seconds / 60 if reached else math.inf,
                    "net_time_min": steps * dense_seconds * density / 60 if reached else math.inf,
                    "wall_time_dense_hw_min": steps * dense_seconds / 60,
                    "cpu_sparse_min": steps * sparse_seconds / 60 if sparse_seconds else math.nan,
                    "average_density": density,
                })
    return pd.DataFrame(rows)


def _reference_names(variants) -> list[str]:
    """The uniform-RigL variants (every encoder linear, no other option): the reference curve."""
    return [v for v in variants if v.startswith("rigl d=") and " " not in v.removeprefix("rigl d=")]


def _reference_curve(means):
    """Uniform RigL's mean (average density, GFLOPs) points that reached the target, by density."""
    ref = means.loc[_reference_names(means.index)].sort_values("average_density")
    return ref[ref["gflops"] < math.inf]


def against_reference(table, fraction: float):
    """Each idea's GFLOPs to the target at ``fraction`` beside uniform RigL's at the same average density.

    The reference is uniform RigL's curve (mean over seeds) interpolated linearly in the average
    density of the encoder linears, as the FLOPs-to-target figure draws it. Columns: ``variant``,
    ``average_density``, ``gflops``, ``reference_gflops`` (NaN outside the curve's density range or
    where the idea never reached the target), ``over_reference`` (below 1: the idea reached the
    target with fewer FLOPs than uniform RigL at its density, i.e. cut net cost).
    """
    import numpy as np
    import pandas as pd

    means = table[table["target"] == fraction].groupby("variant", sort=False)[["gflops", "average_density"]].mean()
    ref, reference_names = _reference_curve(means), _reference_names(means.index)
    rows = []
    for name, row in means.iterrows():
        if name == "dense" or name in reference_names:
            continue
        density, gflops = row["average_density"], row["gflops"]
        inside = (len(ref) >= 2 and gflops < math.inf
                  and ref["average_density"].min() <= density <= ref["average_density"].max())
        reference = float(np.interp(density, ref["average_density"], ref["gflops"])) if inside else math.nan
        rows.append({"variant": name, "average_density": density, "gflops": gflops,
                     "reference_gflops": reference, "over_reference": gflops / reference})
    return pd.DataFrame(rows, columns=["variant", "average_density", "gflops", "reference_gflops", "over_reference"])


# ------------------------------------------------------------------------------------------ figures
def ledger_breakdown(spec: dict[str, Any]):
    """GFLOPs of one dense training step by kind of work, and the share of the sparsifiable encoder
    linears (the only FLOPs sparsity can remove)."""
    import pandas as pd

    c, m, t = spec["corpus"], spec["model"], spec["train"]
    from swatlib.costmodel.transformer import TransformerShape

    shape = TransformerShape(vocab=c["vocab"], width=m["width"], depth=m["depth"], heads=m["heads"], ffn=m["ffn"],
                             seq=c["seq"], batch=t["batch"], masked=0.15 * t["batch"] * c["seq"])
    ledger = transformer_ledger(shape)
    rows = {"encoder linears": 2 * sum(e.macs for e in ledger.entries if e.layer != "decoder"),
            "MLM decoder": 2 * sum(e.macs for e in ledger.entries if e.layer == "decoder")}
    for extra in ledger.extras:
        label = {"activation": "GELU", "optimizer": "AdamW"}.get(extra.kind, extra.kind)
        rows[label] = rows.get(label, 0.0) + extra.flops
    table = pd.DataFrame({"gflops": pd.Series(rows) / 1e9})
    table["share"] = table["gflops"] / table["gflops"].sum()
    return table


def plot_loss(ax, results: dict[str, list[RunResult]], *, x: str, seconds: dict[str, float] | None = None) -> None:
    """Held-out loss of every run of the first seed against cumulative ledger GFLOPs (``x="flops"``) or
    estimated minutes (``x="minutes"``: steps × the run's measured seconds per step, ``seconds`` by
    :func:`describe` name; runs without a timing are left out)."""
    first = results["dense"][0].spec["seed"]
    for run in [results["dense"][0], *(r for r in results["variants"] if r.spec["seed"] == first)]:
        name = describe(dict(run.spec, seed=0))
        h = run.result["history"]
        if x == "flops":
            xs = [r["flops"] / 1e9 for r in h]
        elif seconds and name in seconds:
            xs = [r["step"] * seconds[name] / 60 for r in h]
        else:
            continue
        style = {"color": "black", "linewidth": 2} if run.spec["method"] == "dense" else {}
        ax.plot(xs, [r["test_loss"] for r in h], label=name.removesuffix(" (seed 0)"), **style)


def plot_flops_to_target(ax, table, fraction: float) -> None:
    """Mean GFLOPs to the target at ``fraction`` against average density: uniform RigL (every encoder
    linear) as the reference curve, every other sparse variant as a point; variants that never reached
    it as open markers at the top edge ("> cap"). The dense run is left to the caller (a line)."""
    rows = table[table["target"] == fraction].groupby("variant", sort=False)
    means = rows[["gflops", "average_density"]].mean()
    finite = means[means["gflops"] < math.inf]
    top = (finite["gflops"].max() if len(finite) else 1.0) * 1.15
    reference = _reference_names(means.index)
    ref = _reference_curve(means)
    ax.plot(ref["average_density"], ref["gflops"], color="black", marker="o", label="RigL uniform (reference)")
    for name, row in means.iterrows():
        if name in reference or name == "dense":
            continue
        if row["gflops"] < math.inf:
            ax.scatter(row["average_density"], row["gflops"], label=name, zorder=3)
        else:
            label = f"{name} (> cap)"
            density = rows.get_group(name)["average_density"].mean()
            ax.scatter(1.0 if math.isnan(density) else density, top, marker="^", facecolors="none",
                       edgecolors="0.3", label=label, zorder=3)
    ax.set_ylim(0, top * 1.05)
