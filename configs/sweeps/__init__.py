"""Ablation sweeps: a base config plus a list of field overrides, one training run per variant.

A sweep file defines `get_sweep() -> Sweep`. Variants are dicts of dotted field names to
values, built by hand or with `sweep` / `product` / `zipped` (XManager's hyper-parameter style):

  product(sweep("model.attention", ["joint", "factorized"]), sweep("data.sampler", [...]))

Three namespaces of fields:
- config fields (`data.sampler`, `model.attention`, ...): the base config's own, set before
  training, exactly as `--config.<field>=` on the `launch.train` command line would;
- `sampling.<field>`: a field of the base config's `sampling` section (the sampler settings,
  the segment plan among them), used by the variant's evaluation;
- `eval.<field>`: the evaluation's size (`EVAL_DEFAULTS`).

`resolve_variants` checks every field of every variant before anything runs: an unknown field
or a value of the wrong type is one `SweepError` line naming the sweep file and the field.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import itertools
import os
import re

import ml_collections

# Segment plan kinds (anchored_jax/sampling/segment_plan.py, PLAN_KINDS; a test checks they
# agree): configs hold literal values and do not import the library.
PLAN_KINDS = ("contiguous", "strided", "random")

# The evaluation after training: the consistency study on held-out synthetic clips, kept small
# so it costs less than the training it scores.
EVAL_DEFAULTS = dict(
    frames=64,  # frames per held-out clip; more = longer distances from the anchor
    clips=1,  # held-out clips (synthetic test videos 0..clips-1)
    methods=("anchored",),  # samplers scored; the copy-source baseline is always added
    seed=0,  # noise seed, the same for every variant
)
# Sampling defaults of the evaluation (any `SamplerSettings` field may be set too).
SAMPLING_DEFAULTS = dict(
    plan="contiguous",  # segment plan: contiguous | strided | random
    num_steps=10,  # DDIM steps
    max_anchor_gap_s=-1.0,  # -1 = the run's training window; 0 = true times; > 0 = a cap
)
# `method` is not one: the methods scored are `eval.methods`; the others are the base
# config's `sampling` fields (configs/sdit.py).
_NOT_SWEPT = {"method"}


class SweepError(ValueError):
    """A sweep file or override that cannot work; the message is one line naming it."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What a sweep file's `get_sweep()` returns.

    base: the config, `path:arg` as for `launch.train --config` (the command line may override).
    variants: one dict of overrides per run; `{}` is the base config itself.
    common: overrides applied to every variant first (e.g. a shorter `training.num_steps`).
    train: True trains each variant; False evaluates each variant's sampling settings on one
      trained checkpoint (`launch.sweep --checkpoint`), with no training.
    """

    base: str
    variants: list[dict]
    common: dict = dataclasses.field(default_factory=dict)
    train: bool = True


def sweep(field: str, values) -> list[dict]:
    """One field over several values: `[{field: v} for v in values]`."""
    return [{field: v} for v in values]


def product(*sweeps: list[dict]) -> list[dict]:
    """Every combination of the given sweeps (the first varies slowest)."""
    return [_merge(combo) for combo in itertools.product(*sweeps)]


def zipped(*sweeps: list[dict]) -> list[dict]:
    """The sweeps' variants side by side: the i-th of each merged; lengths must match."""
    lengths = {len(s) for s in sweeps}
    if len(lengths) > 1:
        raise SweepError(f"zipped: expected sweeps of equal length, got {sorted(lengths)}")
    return [_merge(combo) for combo in zip(*sweeps, strict=True)]


def _merge(dicts) -> dict:
    merged = {}
    for d in dicts:
        clash = set(merged) & set(d)
        if clash:
            raise SweepError(f"product/zipped: field {sorted(clash)[0]!r} is set twice")
        merged.update(d)
    return merged


def load_sweep(path: str) -> Sweep:
    """Imports a sweep file and returns its `get_sweep()`."""
    if not os.path.isfile(path):
        raise SweepError(f"--sweep {path}: no such file")
    spec = importlib.util.spec_from_file_location("sweep_" + _safe(os.path.basename(path)), path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SweepError as e:
        raise SweepError(f"{path}: {e}") from None
    if not callable(getattr(module, "get_sweep", None)):
        raise SweepError(f"{path}: expected a function get_sweep() returning a Sweep")
    result = module.get_sweep()
    if not isinstance(result, Sweep):
        raise SweepError(f"{path}: get_sweep() must return a Sweep, got {type(result).__name__}")
    if not result.variants or not all(isinstance(v, dict) for v in result.variants):
        raise SweepError(f"{path}: Sweep.variants: expected a non-empty list of dicts")
    return result


def parse_assignment(text: str) -> tuple[str, object]:
    """`field=value` from the command line; the value is a Python literal or else a string."""
    field, sep, raw = text.partition("=")
    if not sep or not field:
        raise SweepError(f"--set {text!r}: expected field=value")
    return field.strip(), parse_value(raw)


def parse_value(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


@dataclasses.dataclass(frozen=True)
class Variant:
    """One resolved run: its directory name, its overrides and what they set."""

    name: str
    overrides: dict  # the variant's own overrides (what names it)
    config: ml_collections.ConfigDict  # base + common + --set + overrides
    sampling: dict  # SAMPLING_DEFAULTS updated by sampling.* overrides
    evaluation: dict  # EVAL_DEFAULTS updated by eval.* overrides


def resolve_variants(
    sweep_spec: Sweep, base: ml_collections.ConfigDict, extra: dict, origin: str
) -> list[Variant]:
    """Applies common, `extra` (command-line) and each variant's overrides to copies of `base`.

    Raises `SweepError` naming `origin` (the sweep file or `--set`) and the field on the first
    unknown field or ill-typed value, and on two variants that would share a directory.
    """
    layers = [(sweep_spec.common, origin), (extra, "--set")]
    names = variant_names(sweep_spec.variants)
    variants, seen = [], {}
    for name, overrides in zip(names, sweep_spec.variants, strict=True):
        config = copy.deepcopy(base)
        sampling, evaluation = dict(SAMPLING_DEFAULTS), dict(EVAL_DEFAULTS)
        for layer, where in [*layers, (overrides, origin)]:
            for field, value in layer.items():
                _apply(config, sampling, evaluation, field, value, where)
        if name in seen:
            raise SweepError(f"{origin}: variants {seen[name]} and {overrides} share a name")
        seen[name] = overrides
        variants.append(Variant(name, dict(overrides), config, sampling, evaluation))
    return variants


def _apply(config, sampling, evaluation, field, value, where) -> None:
    section, _, rest = field.partition(".")
    if section == "sampling":
        fields = set(config.get("sampling", {})) | set(SAMPLING_DEFAULTS)
        fields -= _NOT_SWEPT
        if rest not in fields:
            raise SweepError(
                f"{where}: unknown field {field!r}; sampling fields are {sorted(fields)}"
            )
        if rest == "plan" and value not in PLAN_KINDS:
            raise SweepError(f"{where}: {field}: expected one of {list(PLAN_KINDS)}, got {value!r}")
        sampling[rest] = value
        return
    if section == "eval":
        if rest not in EVAL_DEFAULTS:
            raise SweepError(
                f"{where}: unknown field {field!r}; eval fields are {sorted(EVAL_DEFAULTS)}"
            )
        if rest == "methods":
            value = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
        evaluation[rest] = value
        return
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
        node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
        if node is None:
            break
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise SweepError(f"{where}: unknown config field {field!r}")
    old = node[leaf]
    try:
        node[leaf] = value
    except (TypeError, ValueError):
        raise SweepError(
            f"{where}: {field}: expected a value of type {type(old).__name__} (like {old!r}), "
            f"got {value!r}"
        ) from None


def variant_names(variants: list[dict]) -> list[str]:
    """Directory names from the overrides: `key=value` joined by `+`, filesystem-safe.

    A key is its last component (`sampler` for `data.sampler`) unless two fields of the sweep
    share it, then it is the full dotted name. `{}` is `base`.
    """
    fields = {f for v in variants for f in v}
    leaves = [f.rsplit(".", 1)[-1] for f in fields]
    short = {f: f.rsplit(".", 1)[-1] for f in fields if leaves.count(f.rsplit(".", 1)[-1]) == 1}
    names = []
    for overrides in variants:
        parts = [f"{short.get(k, k)}={_value_text(v)}" for k, v in overrides.items()]
        names.append(_safe("+".join(parts)) or "base")
    return names


def _value_text(value) -> str:
    if isinstance(value, list | tuple):
        return "-".join(map(_value_text, value))
    return str(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", text)[:120]
