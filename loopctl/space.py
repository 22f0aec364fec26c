"""Parameters and their numeric encoding.

Strategies work on a box of encoded coordinates (mostly [0, 1]) with optional
linear equality constraints (a composition's fractions sum to one). This module
is the only place that knows how a parameter maps to and from that box, so the
strategies stay free of materials concepts and the controller free of numerics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopctl.errors import ValidationError
from loopctl.spec_types import (
    ChoiceParam,
    CompositionParam,
    FixedParam,
    FormulaParam,
    IntegerParam,
    LinearConstraint,
    Parameter,
    PoolSpec,
    RangeParam,
    Spec,
    StructureParam,
)
from loopctl.values import finite_number

COMPOSITION_SUM_TOL = 1e-6  # accepted from users and drivers; proposals are exact to 1e-12
BOUND_TOL = 1e-9
TRACE = 1e-5  # decoded fractions this close to their lower bound are set to it


@dataclass(frozen=True)
class EqualityConstraint:
    """sum(coefficients[i] * x[indices[i]]) == rhs, in encoded coordinates."""

    indices: tuple[int, ...]
    coefficients: tuple[float, ...]
    rhs: float


@dataclass(frozen=True)
class InequalityConstraint:
    """sum(coefficients[i] * x[indices[i]]) >= rhs, in encoded coordinates (BoTorch's form)."""

    indices: tuple[int, ...]
    coefficients: tuple[float, ...]
    rhs: float
    text: str


class Space:
    """Encoding, decoding, validation and quasi-random sampling of a campaign's parameters.

    Choices are encoded as their index (one column each, listed in ``cat_dims``)
    so models can treat them as categories; formulas as element-property
    descriptors; a pool restricts the space to its rows.
    """

    @classmethod
    def for_spec(cls, spec: Spec) -> Space:
        return cls(spec.space, spec.parameter_constraints, spec.pool)

    def __init__(
        self,
        params: Sequence[Parameter],
        constraints: Sequence[LinearConstraint] = (),
        pool: PoolSpec | None = None,
    ) -> None:
        self.params = tuple(params)
        self.constraints = tuple(constraints)
        self.names = tuple(p.name for p in self.params)
        self._slices: dict[str, slice] = {}
        lows: list[float] = []
        highs: list[float] = []
        equalities: list[EqualityConstraint] = []
        cat_dims: list[int] = []
        start = 0
        for p in self.params:
            width = _width(p)
            self._slices[p.name] = slice(start, start + width)
            if isinstance(p, CompositionParam):
                lows += [b[0] for b in p.bounds]
                highs += [b[1] for b in p.bounds]
                idx = tuple(range(start, start + width))
                equalities.append(EqualityConstraint(idx, tuple(1.0 for _ in idx), 1.0))
            elif isinstance(p, ChoiceParam):
                lows.append(0.0)
                highs.append(float(len(p.values) - 1))
                cat_dims.append(start)
            else:
                lows += [0.0] * width
                highs += [1.0] * width
            start += width
        self.dim = start
        self.cat_dims = tuple(cat_dims)
        self.bounds = np.array([lows, highs], dtype=float).reshape(2, self.dim)
        self.equalities = tuple(equalities)
        self.inequalities = tuple(self._inequality(c) for c in self.constraints)
        self.pool: tuple[dict[str, Any], ...] = tuple(dict(r) for r in pool.rows) if pool else ()
        self._pool_index = {self.key(r): i for i, r in enumerate(self.pool)}
        self.pool_x = self.encode_many(self.pool) if self.pool else np.zeros((0, self.dim))
        if self.pool:
            for p in self.params:  # descriptors are scaled by the pool's own range
                if isinstance(p, FormulaParam):
                    sl = self._slices[p.name]
                    self.bounds[0, sl] = self.pool_x[:, sl].min(axis=0)
                    self.bounds[1, sl] = np.maximum(
                        self.pool_x[:, sl].max(axis=0), self.bounds[0, sl] + 1e-9
                    )
        self.discrete = bool(self.pool) or all(
            isinstance(p, (IntegerParam, ChoiceParam, FixedParam)) for p in self.params
        )

    def _inequality(self, c: LinearConstraint) -> InequalityConstraint:
        """A constraint in parameter units -> BoTorch's ``sum a_i x_i >= r`` on the box."""
        sign = -1.0 if c.op == "<=" else 1.0
        idx: list[int] = []
        coef: list[float] = []
        rhs = sign * c.bound
        for name, a in c.terms:
            if name in self._slices:
                p = next(q for q in self.params if q.name == name)
                assert isinstance(p, (RangeParam, IntegerParam))
                idx.append(self._slices[name].start)
                coef.append(sign * a * (p.high - p.low))
                rhs -= sign * a * p.low
            else:
                base, _, element = name.rpartition(".")
                comp = next(q for q in self.params if q.name == base)
                assert isinstance(comp, CompositionParam)
                idx.append(self._slices[base].start + comp.elements.index(element))
                coef.append(sign * a)
        return InequalityConstraint(tuple(idx), tuple(coef), rhs, c.text)

    def violated(self, values: Mapping[str, Any]) -> list[str]:
        """The parameter constraints a candidate breaks (beyond rounding), by their text."""
        return [
            c.text
            for c in self.constraints
            if c.slack(values) < -BOUND_TOL * max(1.0, abs(c.bound))
        ]

    def in_pool(self, values: Mapping[str, Any]) -> int | None:
        """Row number of a candidate in the pool (None when absent or there is no pool)."""
        return self._pool_index.get(self.key(values))

    # ------------------------------------------------------------------ validation

    def validate(self, values: Mapping[str, Any], where: str = "parameters") -> dict[str, Any]:
        """Check a full parameter assignment and return it in canonical form.

        Canonical form: floats for ranges, ints for integers, the exact choice
        value, and ``{element: fraction}`` in the campaign's element order for
        compositions. Fixed parameters may be omitted and are filled in.
        """
        if not isinstance(values, Mapping):
            raise ValidationError(f"{where}: must be a mapping of parameter names to values")
        unknown = [k for k in values if k not in self.names]
        if unknown:
            raise ValidationError(
                f"{where}: unknown parameter {unknown[0]!r}; "
                f"the campaign has {', '.join(self.names)}"
            )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name not in values:
                if isinstance(p, FixedParam):
                    out[p.name] = p.value
                    continue
                raise ValidationError(f"{where}.{p.name}: missing")
            out[p.name] = _validate_value(p, values[p.name], f"{where}.{p.name}")
        broken = self.violated(out)
        if broken:
            raise ValidationError(f"{where}: violates the constraint {broken[0]!r}")
        if self.pool and self.in_pool(out) is None:
            raise ValidationError(f"{where}: is not one of the {len(self.pool)} pool candidates")
        return out

    # ------------------------------------------------------------------ encoding

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        x = np.zeros(self.dim)
        for p in self.params:
            x[self._slices[p.name]] = _encode(p, values[p.name])
        return x

    def encode_many(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self.dim))
        return np.stack([self.encode(r) for r in rows])

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """Map an encoded point back to values; repairs small infeasibilities exactly."""
        x = np.asarray(x, dtype=float).reshape(self.dim)
        if self.pool:  # a model's point between candidates means the nearest candidate
            scale = np.maximum(self.bounds[1] - self.bounds[0], 1e-12)
            dist = (((self.pool_x - x) / scale) ** 2).sum(axis=1)
            return dict(self.pool[int(np.argmin(dist))])
        if self.inequalities:
            x = self._repair(x)
        return {p.name: _decode(p, x[self._slices[p.name]]) for p in self.params}

    def _repair(self, x: np.ndarray) -> np.ndarray:
        """Optimisers stop 1e-9 outside linear constraints; step back inside, within bounds."""
        x = x.copy()
        for _ in range(50):
            worst = 0.0
            for c in self.inequalities:
                idx, a = list(c.indices), np.array(c.coefficients)
                gap = c.rhs - float(a @ x[idx])
                if gap > 0:
                    worst = max(worst, gap)
                    x[idx] += a * (gap + 1e-12 * max(1.0, abs(c.rhs))) / float(a @ a)
            x = np.clip(x, self.bounds[0], self.bounds[1])
            if worst == 0.0:
                break
        return x

    def key(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """A hashable identity of a candidate, for duplicate detection."""
        parts: list[Any] = []
        for p in self.params:
            v = values[p.name]
            if isinstance(p, CompositionParam):
                parts.append(tuple(round(float(v[e]), 9) for e in p.elements))
            elif isinstance(v, float):
                parts.append(round(v, 12))
            else:
                parts.append(v)
        return tuple(parts)

    # ------------------------------------------------------------------ sampling

    def sobol_dim(self) -> int:
        return sum(_sobol_width(p) for p in self.params)

    def from_unit(self, u: np.ndarray) -> dict[str, Any]:
        """Map a point of the unit cube (e.g. a Sobol point) to a feasible candidate."""
        out: dict[str, Any] = {}
        i = 0
        for p in self.params:
            w = _sobol_width(p)
            out[p.name] = _from_unit(p, u[i : i + w])
            i += w
        return out

    def centre(self) -> dict[str, Any]:
        """The middle of the unit cube as values: mid-range (geometric on a log scale), equal
        shares above each element's lower bound, the middle choice."""
        return self.from_unit(np.full(self.sobol_dim(), 0.5))

    def column_names(self) -> set[str]:
        """Every column :meth:`unflat` reads (compositions: formula or one per element)."""
        names = set(self.names)
        for p in self.params:
            if isinstance(p, CompositionParam):
                names |= {f"{p.name}.{e}" for e in p.elements} | set(p.elements)
        return names

    def unflat(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Inverse of :func:`loopctl.values.flat`, for imports: a composition may be a
        formula or one column per element."""
        values: dict[str, Any] = {}
        for p in self.params:
            if isinstance(p, CompositionParam):
                cols = {e: row.get(f"{p.name}.{e}", row.get(e)) for e in p.elements}
                if all(_present(c) for c in cols.values()):
                    values[p.name] = {
                        e: _to_float(c, f"{where}.{p.name}.{e}") for e, c in cols.items()
                    }
                elif _present(row.get(p.name)):
                    values[p.name] = row[p.name]
                else:
                    raise ValidationError(
                        f"{where}: no value for composition {p.name!r}; give a "
                        f"formula column {p.name!r} or one column per element "
                        f"({', '.join(p.elements)})"
                    )
            elif _present(row.get(p.name)):
                values[p.name] = _coerce_text(p, row[p.name])
        return values


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, str) and not v.strip())


def _to_float(v: Any, where: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: {v!r} is not a number") from None


def _coerce_text(p: Parameter, v: Any) -> Any:
    """CSV cells arrive as text; turn them into the parameter's type where it is unambiguous."""
    if not isinstance(v, str):
        return v
    if isinstance(p, (RangeParam, IntegerParam)):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if isinstance(p, IntegerParam) and f == int(f) else f
    if isinstance(p, (ChoiceParam, FixedParam)):
        options = p.values if isinstance(p, ChoiceParam) else (p.value,)
        for o in options:
            if str(o) == v:
                return o
    return v


def _width(p: Parameter) -> int:
    if isinstance(p, (FixedParam, StructureParam)):  # a structure is seen through its formula
        return 0
    if isinstance(p, FormulaParam):
        from loopctl.features import NAMES

        return len(NAMES)
    if isinstance(p, CompositionParam):
        return len(p.elements)
    return 1


def _sobol_width(p: Parameter) -> int:
    if isinstance(p, (FixedParam, FormulaParam, StructureParam)):
        return 0
    if isinstance(p, CompositionParam):
        return len(p.elements)
    return 1


def _validate_value(p: Parameter, v: Any, where: str) -> Any:
    if isinstance(p, RangeParam):
        x = finite_number(v, where)
        if x < p.low - BOUND_TOL * max(1.0, abs(p.low)) or x > p.high + BOUND_TOL * max(
            1.0, abs(p.high)
        ):
            shown = f"{x:g}"
            if shown in (f"{p.low:g}", f"{p.high:g}"):  # just past a bound: show the digits
                shown = repr(x)
            raise ValidationError(f"{where}: {shown} is outside the bounds [{p.low:g}, {p.high:g}]")
        return min(max(x, p.low), p.high)
    if isinstance(p, IntegerParam):
        x = finite_number(v, where)
        if x != int(x):
            raise ValidationError(f"{where}: {v!r} is not a whole number")
        if x < p.low or x > p.high:
            raise ValidationError(f"{where}: {int(x)} is outside the bounds [{p.low}, {p.high}]")
        return int(x)
    if isinstance(p, ChoiceParam):
        for option in p.values:
            if v == option and type(v) is not bool:
                return option
        raise ValidationError(f"{where}: {v!r} is not one of {list(p.values)}")
    if isinstance(p, FixedParam):
        if v != p.value:
            raise ValidationError(f"{where}: is fixed at {p.value!r}, got {v!r}")
        return p.value
    if isinstance(p, FormulaParam):
        if not isinstance(v, str):
            raise ValidationError(f"{where}: must be a chemical formula, got {v!r}")
        _parse_formula(v, where)
        return v.strip()
    if isinstance(p, StructureParam):
        if not isinstance(v, str) or not v.strip():
            raise ValidationError(f"{where}: must be the path of a structure file, got {v!r}")
        return v.strip()
    return _validate_composition(p, v, where)


def _validate_composition(p: CompositionParam, v: Any, where: str) -> dict[str, float]:
    if isinstance(v, str):
        v = _parse_formula(v, where)
    if not isinstance(v, Mapping):
        raise ValidationError(f"{where}: must be a formula or a mapping of element to fraction")
    unknown = [e for e in v if e not in p.elements]
    if unknown:
        raise ValidationError(
            f"{where}: element {unknown[0]!r} is not in this campaign's "
            f"composition ({', '.join(p.elements)})"
        )
    fr = {e: finite_number(v.get(e, 0.0), f"{where}.{e}") for e in p.elements}
    total = sum(fr.values())
    if abs(total - 1.0) > COMPOSITION_SUM_TOL:
        raise ValidationError(f"{where}: fractions sum to {total:.9g}, not 1")
    for (lo, hi), e in zip(p.bounds, p.elements, strict=True):
        if fr[e] < lo - BOUND_TOL or fr[e] > hi + BOUND_TOL:
            raise ValidationError(
                f"{where}.{e}: fraction {fr[e]:g} is outside the bounds [{lo:g}, {hi:g}]"
            )
    # tiny repairs only (within the tolerances above): exact sum, bounds kept exactly
    lows = np.array([b[0] for b in p.bounds])
    highs = np.array([b[1] for b in p.bounds])
    exact = project_to_simplex(np.array([fr[e] for e in p.elements]), lows, highs)
    return {e: float(x) for e, x in zip(p.elements, exact, strict=True)}


def _parse_formula(text: str, where: str) -> dict[str, float]:
    from pymatgen.core import Composition

    try:
        comp = Composition(text).fractional_composition
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise ValidationError(f"{where}: {text!r} is not a chemical formula ({exc})") from None
    return {str(el): float(amount) for el, amount in comp.items()}


def _encode(p: Parameter, v: Any) -> np.ndarray:
    if isinstance(p, RangeParam):
        if p.log:
            return np.array(
                [(math.log(v) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))]
            )
        return np.array([(v - p.low) / (p.high - p.low)])
    if isinstance(p, IntegerParam):
        return np.array([(v - p.low) / (p.high - p.low)])
    if isinstance(p, ChoiceParam):
        return np.array([float(p.values.index(v))])
    if isinstance(p, (FixedParam, StructureParam)):
        return np.zeros(0)
    if isinstance(p, FormulaParam):
        from loopctl.features import formula_features

        return np.array(formula_features(v))
    return np.array([v[e] for e in p.elements], dtype=float)


def _decode(p: Parameter, x: np.ndarray) -> Any:
    if isinstance(p, RangeParam):
        u = float(np.clip(x[0], 0.0, 1.0))
        if u in (0.0, 1.0):  # optimisers stop on bounds: give them as written, for
            return float(p.high if u else p.low)  # exp(log(60)) is 59.999999999999986
        if p.log:
            value = math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
        else:
            value = p.low + u * (p.high - p.low)
        return float(min(max(value, p.low), p.high))
    if isinstance(p, IntegerParam):
        u = float(np.clip(x[0], 0.0, 1.0))
        return round(p.low + u * (p.high - p.low))
    if isinstance(p, ChoiceParam):
        return p.values[int(np.clip(np.rint(x[0]), 0, len(p.values) - 1))]
    if isinstance(p, FixedParam):
        return p.value
    if isinstance(p, FormulaParam):
        raise ValueError(f"{p.name}: a formula comes from the pool; it cannot be decoded")
    if isinstance(p, StructureParam):
        raise ValueError(f"{p.name}: a structure comes from the pool; it cannot be decoded")
    lo = np.array([b[0] for b in p.bounds])
    hi = np.array([b[1] for b in p.bounds])
    # an optimiser's 1e-7 of an element is nothing a lab can weigh out: make it exact
    trace = x < lo + TRACE
    if trace.all() or hi[~trace].sum() < 1.0 - lo[trace].sum():
        trace[:] = False  # the rest cannot make up the total: keep every element in play
    fr = lo.copy()
    fr[~trace] = project_to_simplex(x[~trace], lo[~trace], hi[~trace], 1.0 - lo[trace].sum())
    return {e: float(f) for e, f in zip(p.elements, fr, strict=True)}


def _from_unit(p: Parameter, u: np.ndarray) -> Any:
    if isinstance(p, ChoiceParam):
        return p.values[min(int(u[0] * len(p.values)), len(p.values) - 1)]
    if isinstance(p, CompositionParam):
        lo = np.array([b[0] for b in p.bounds])
        hi = np.array([b[1] for b in p.bounds])
        e = -np.log(np.clip(u, 1e-12, 1.0))  # exponential spacings -> uniform on the simplex
        y = e / e.sum()
        x = lo + (1.0 - lo.sum()) * y
        return {
            el: float(f) for el, f in zip(p.elements, project_to_simplex(x, lo, hi), strict=True)
        }
    return _decode(p, u)


def project_to_simplex(
    y: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: float = 1.0
) -> np.ndarray:
    """Euclidean projection onto {x : sum x = total, lo <= x <= hi}.

    x = clip(y - t, lo, hi) with the shift t from :func:`simplex_shift`, the last rounding
    error then shared out, so the result meets the bounds exactly and the sum to ~1e-15 and
    proposals never drift off the simplex through optimiser tolerances.

    A point already on the simplex (to the rounding of its own sum) comes back
    unchanged: the clip would move it by ~1e-16 (0 becomes 2.6e-16, 0.4 becomes
    0.3999999999999995), so a pool row of 0.1/0.3/0.6 would no longer be what its CSV
    says, and validating a value twice would give two different values -- which once
    made stored campaign specs fail their own hash.
    """
    y = np.asarray(y, dtype=float)
    if (y >= lo).all() and (y <= hi).all() and abs(y.sum() - total) <= _sum_rounding(y, total):
        return y.copy()
    t = float(simplex_shift(y, lo, hi, total)[0])
    return _spread(np.clip(y - t, lo, hi), lo, hi, total)


def simplex_shift(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: float) -> np.ndarray:
    """The shift t with sum(clip(y - t, lo, hi)) = total, for every row of ``y`` at once
    (shape ``y.shape[:-1] + (1,)``): the one projection algorithm in loopctl.

    The sum is piecewise linear and non-increasing in t, with its 2k kinks at y - hi and
    y - lo, so t is found exactly between the two kinks that straddle ``total``, not by
    iterating. Batched because the optimiser's projection (strategies/search.py ``project``)
    evaluates it on every restart and q-batch point; that one takes t from here, outside
    the autograd graph, and recomputes x from it in torch so that gradients flow. Numpy,
    so that validating a composition never imports torch.
    """
    y = np.asarray(y, dtype=float)
    kinks = np.sort(np.concatenate([y - hi, y - lo], axis=-1), axis=-1)
    sums = np.clip(y[..., None, :] - kinks[..., :, None], lo, hi).sum(axis=-1)
    j = np.clip((sums >= total).sum(axis=-1, keepdims=True) - 1, 0, kinks.shape[-1] - 2)
    t0, t1 = np.take_along_axis(kinks, j, -1), np.take_along_axis(kinks, j + 1, -1)
    s0, s1 = np.take_along_axis(sums, j, -1), np.take_along_axis(sums, j + 1, -1)
    drop = s0 - s1
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = t0 + (s0 - total) * (t1 - t0) / drop
    return np.where(drop > 0, inside, t0)


def _spread(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: float) -> np.ndarray:
    """The last rounding error, shared by the coordinates with room to move."""
    err = total - x.sum()
    free = (x > lo + 1e-15) & (x < hi - 1e-15)
    if free.any() and err != 0.0:
        x[free] += err / free.sum()
        x = np.clip(x, lo, hi)
    return x


def _sum_rounding(y: np.ndarray, total: float) -> float:
    """How far a float sum of ``len(y)`` terms may be from ``total`` through rounding alone."""
    return 4.0 * len(y) * float(np.finfo(float).eps) * max(1.0, abs(total))
