"""Toy BERT training-step time: dense vs truly sparse vs masked encoder linears, one thread.

What is timed (identically for every variant, one process, one thread, side by side): the training
step of notebook ``50_toy_bert_sparsity``'s timing runs — the model, task, optimizer and step of
:mod:`swatlib.experiments.toy_bert`, built by the experiment itself (``build_specs`` →
``build_run``) and timed by its own timer (``time_steps``, the one of the study's timing runs): draw and
mask a batch of windows (:class:`~swatlib.models.toy_bert.MaskedLM`), forward, MLM cross-entropy at the
picked positions, backward, gradient flow, AdamW step, learning-rate scheduler step. Sizes come from a
profile of ``notebooks/params/`` (``quick`` by default: width 128, depth 2, 4 heads, feed-forward 512,
windows of 64 tokens, batch 32, vocabulary 4096; WordNet glosses, the frozen PPMI-SVD embedding).
Variants:

``dense``
    the study's dense timing run: every encoder linear an ``nn.Linear``;
``sparse-<d>``
    the study's RigL timing run at density d: every encoder linear a truly sparse
    :class:`~swatlib.sparse.SparseLinear` (``sparsify(kind="sparse")``);
``masked-<d>``
    the same spec with ``kind="masked"``: dense ``nn.Linear`` weights × a {0, 1} mask
    (:class:`~swatlib.sparse.MaskedWeight`) — what the sparse method costs on dense hardware. It
    starts from the same topology and weights as ``sparse-<d>``;
``swat-<d>``
    the study's SWAT timing run (``paper`` profile): every encoder linear a
    :class:`~swatlib.swat.SWATLinear` at density d — dense weights, Top-K of the weights and of the
    activations on every step (period 1), every weight updated.

**No topology updates are timed**: RigL is built as in the study (its per-step hooks are attached)
but its step is never called, so no drop-and-grow step falls in the window (the study's timing
runs include one per ``delta_t`` steps). The embedding, the decoder, the LayerNorms and the attention
products stay dense in every variant: only the encoder linears' share of a step can shrink (the
``ledger FLOPs × dense`` column: what a perfect sparse implementation would save).

Per repeat the variants run round-robin, each for ``steps`` steps after ``warmup`` untimed ones
before the first repeat; the median over the repeats of the mean step time is reported (wall and
process CPU time; with one thread they agree on an idle machine), with its ratio to dense, and for
``sparse-<d>`` its ratio to ``masked-<d>``. Unless ``--no-eval``, each repeat also times one
evaluation of every variant — the study's ``task.evaluate``: forward passes (eval mode, no grad) over
all the held-out windows. Every variant draws its batches from its spec's seed; ``sparse-<d>`` and
``masked-<d>`` see the same batches, ``dense`` statistically equal ones.

The load average is recorded before and after; a run whose 1-minute load average before it
exceeds :data:`swatlib.machine.BUSY_LOAD` is flagged as a **busy machine**.

Run ``python benchmarks/toy_bert.py --help``; the write-up's command (prints the markdown table of
benchmarks/README.md, every number also in the JSON file)::

    python benchmarks/toy_bert.py --repeats 5 --steps 10 --json /tmp/toy_bert.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from swatlib import machine
from swatlib.atomic import atomic_write_bytes
from swatlib.checks import check_int
from swatlib.costmodel.transformer import model_ledger
from swatlib.data import DatasetNotFoundError
from swatlib.densities import check_density
from swatlib.experiments import toy_bert
from swatlib.reproduce import PROFILES, load_profile


NOTEBOOK = "50_toy_bert_sparsity"
PROFILE = "quick"
DENSITIES = (0.5, 0.2, 0.1)
REPEATS = 5
STEPS = 10
WARMUP = 3


def variant_specs(parameters: dict[str, Any], densities: Sequence[float] = DENSITIES, *,
                  profile: str = PROFILE) -> dict[str, dict[str, Any]]:
    """The study's timing specs by variant name: ``dense``, then ``sparse-<d>``, ``masked-<d>``, ``swat-<d>``
    per density.

    Parameters
    ----------
    parameters
        The notebook's parameters of a profile (``load_profile(profile)[NOTEBOOK]``).
    densities
        Densities of the encoder linears, distinct, each in (0, 1].

    Raises
    ------
    ValueError
        For a density outside (0, 1], repeated densities, or none.
    """
    if not densities:
        raise ValueError("densities must name at least one density, e.g. --densities 0.5 0.2 0.1")
    densities = [check_density(d, "densities") for d in densities]
    if len(set(densities)) != len(densities):
        raise ValueError(f"densities must be distinct, got {densities}")
    p = parameters
    timing = toy_bert.build_specs(profile=profile, seeds=p["seeds"], variants=[], corpus=p["corpus"],
                                  model=p["model"], train=p["train"], cap=p["cap"], kind=p["kind"],
                                  timing_variants=[{"method": method, "density": d}
                                                   for d in densities for method in ("rigl", "swat")])["timing"]
    specs = {"dense": timing[0]}
    for density, rigl, swat in zip(densities, timing[1::2], timing[2::2]):
        specs[f"sparse-{density:g}"] = rigl
        specs[f"masked-{density:g}"] = dict(rigl, kind="masked")
        specs[f"swat-{density:g}"] = swat
    return specs


def _window(spec: dict[str, Any], steps: int) -> dict[str, Any]:
    """``spec`` whose timer runs ``steps`` timed steps and no untimed ones."""
    return dict(spec, train=dict(spec["train"], timing_warmup=0, timing_steps=steps))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run(specs: dict[str, dict[str, Any]], *, prepared: toy_bert.Prepared | None = None, repeats: int = REPEATS,
        steps: int = STEPS, warmup: int = WARMUP, evaluate: bool = True, threads: int = 1,
        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every variant of :func:`variant_specs`; the JSON-ready result (``--json PATH`` writes it).

    ``prepared`` (the corpus, windows and embedding) defaults to the study's, :func:`toy_bert.prepared_for`
    the dense spec. torch's thread count is restored afterwards.

    Raises
    ------
    ValueError
        For ``repeats``, ``steps`` or ``threads`` below 1, or a negative ``warmup``.
    """
    for name, value in (("repeats", repeats), ("steps", steps), ("threads", threads)):
        check_int(value, name)
    check_int(warmup, "warmup", 0)
    dense = specs["dense"]
    if prepared is None:
        prepared = toy_bert.prepared_for(dense)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = machine.load_average()
    try:
        parts = {name: toy_bert.build_run(spec, prepared) for name, spec in specs.items()}
        if log:
            log(f"{len(parts)} variants: {warmup} untimed step(s) each, then {repeats} repeats × {steps} steps"
                + (" + one evaluation" if evaluate else "") + " round-robin")
        for name, (model, task, optimizer, scheduler, _, generator) in parts.items():
            if warmup:
                toy_bert.time_steps(_window(specs[name], warmup), model, task, optimizer, scheduler, (), generator)
        samples = {name: {"step": [], "step_cpu": [], "eval": [], "eval_cpu": []} for name in parts}
        density = {}
        for repeat in range(repeats):
            for name, (model, task, optimizer, scheduler, _, generator) in parts.items():
                cpu = time.process_time()
                timed = toy_bert.time_steps(_window(specs[name], steps), model, task, optimizer, scheduler, (),
                                            generator)
                samples[name]["step_cpu"].append((time.process_time() - cpu) / steps)
                samples[name]["step"].append(timed["seconds_per_step"])
                density[name] = timed["density"]
                if evaluate:
                    cpu, start = time.process_time(), time.perf_counter()
                    task.evaluate(model)
                    samples[name]["eval"].append(time.perf_counter() - start)
                    samples[name]["eval_cpu"].append(time.process_time() - cpu)
            if log:
                log(f"repeat {repeat + 1}/{repeats}: " + ", ".join(
                    f"{name} {1e3 * s['step'][-1]:.1f} ms" for name, s in samples.items()))
        # decoder positions per step, averaged over every step drawn by the dense run (its task counts them)
        masked = parts["dense"][1].picked / (warmup + repeats * steps)
        batch = dense["train"]["batch"]
        variants = {}
        for name, s in samples.items():
            model = parts[name][0]
            variants[name] = {
                "kind": "dense" if name == "dense" else specs[name]["kind"], "density": density[name],
                "step_s": _median(s["step"]), "step_cpu_s": _median(s["step_cpu"]), "step_s_all": s["step"],
                "eval_s": _median(s["eval"]), "eval_cpu_s": _median(s["eval_cpu"]), "eval_s_all": s["eval"],
                "ledger_flops_per_step": model_ledger(model, batch, masked).training_flops(include_extras=True)}
        add_ratios(variants)
        env = {**machine.describe(), "load_average": {"before": load_before, "after": machine.load_average()}}
    finally:
        torch.set_num_threads(previous)
    return {"profile": dense["profile"], "model": dense["model"], "corpus": dense["corpus"], "batch": batch,
            "decoder_positions_per_step": masked, "held_out_windows": len(prepared.held_out),
            "repeats": repeats, "steps": steps, "warmup": warmup, "threads": threads, "environment": env,
            "busy_threshold": machine.BUSY_LOAD, "busy_machine": machine.is_busy(load_before), "variants": variants}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else numerator / denominator


def add_ratios(variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add each variant's ratios to ``dense`` — wall and CPU step time, evaluation (None when not timed),
    ledger FLOPs — and, to each ``sparse-<d>``, its wall and CPU step time over ``masked-<d>``'s."""
    base = variants["dense"]
    for name, v in variants.items():
        for key, of in (("step_over_dense", "step_s"), ("cpu_over_dense", "step_cpu_s"),
                        ("eval_over_dense", "eval_s"), ("eval_cpu_over_dense", "eval_cpu_s"),
                        ("flops_over_dense", "ledger_flops_per_step")):
            v[key] = _ratio(v[of], base[of])
        if name.startswith("sparse-"):
            masked = variants["masked-" + name.removeprefix("sparse-")]
            v["step_over_masked"] = v["step_s"] / masked["step_s"]
            v["cpu_over_masked"] = v["step_cpu_s"] / masked["step_cpu_s"]
    return variants


def _cell(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "—" if value is None else format(scale * value, spec)


def summary(result: dict[str, Any]) -> str:
    """What the script prints: the settings, the machine, the load averages and a markdown table."""
    env, m, c = result["environment"], result["model"], result["corpus"]
    load = env["load_average"]
    lines = [f"toy BERT ({result['profile']} profile): width {m['width']}, depth {m['depth']}, {m['heads']} heads, "
             f"ffn {m['ffn']}, seq {c['seq']}, batch {result['batch']}, vocab {c['vocab']}, AdamW; "
             f"{result['decoder_positions_per_step']:.0f} decoder positions per step; evaluation: "
             f"{result['held_out_windows']} held-out windows",
             f"{env['cpu']} ({env['logical_cpus']} logical CPUs), torch {env['torch']}, {result['threads']} "
             f"thread(s); median of {result['repeats']} repeats × {result['steps']} steps after "
             f"{result['warmup']} untimed; no topology updates",
             f"load average before {load['before']}, after {load['after']}"
             + (f"  ** BUSY MACHINE (1-min load before > {result['busy_threshold']:g}): not the idle-machine "
                f"figure **" if result["busy_machine"] else ""),
             "",
             "| variant | encoder-linear density | step ms | × dense | step CPU ms | CPU × dense "
             "| sparse / masked (wall, CPU) | eval ms | eval × dense | eval CPU × dense | ledger FLOPs × dense |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in result["variants"].items():
        over_masked = (f"{v['step_over_masked']:.2f}, {v['cpu_over_masked']:.2f}" if "step_over_masked" in v
                       else "—")
        lines.append(f"| {name} | {v['density']:.2f} | {_cell(v['step_s'], '.1f', 1e3)} | "
                     f"{v['step_over_dense']:.2f} | {_cell(v['step_cpu_s'], '.1f', 1e3)} | {v['cpu_over_dense']:.2f} | "
                     f"{over_masked} | {_cell(v['eval_s'], '.0f', 1e3)} | {_cell(v['eval_over_dense'], '.2f')} | "
                     f"{_cell(v['eval_cpu_over_dense'], '.2f')} | {v['flops_over_dense']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default=PROFILE,
                        help=f"sizes of notebooks/params/<profile>.yaml, {NOTEBOOK} (default {PROFILE})")
    parser.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed steps per variant before the repeats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-eval", action="store_true", help="do not time the evaluation")
    parser.add_argument("--json", metavar="PATH", help="also write every number as JSON to PATH (atomically)")
    args = parser.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        specs = variant_specs(load_profile(args.profile)[NOTEBOOK], args.densities, profile=args.profile)
        result = run(specs, repeats=args.repeats, steps=args.steps, warmup=args.warmup, evaluate=not args.no_eval,
                     threads=args.threads, log=log)
    except (ValueError, DatasetNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(result))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
