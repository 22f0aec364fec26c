"""`loopctl report`: a self-contained HTML page and PNG figures of a campaign.

Everything is read from the database; the GP diagnostics refit a model on the
completed trials the same way the strategy does, so what a reviewer sees is what
the optimiser believed.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from loopctl import ledger
from loopctl.integrity import verified_spec
from loopctl.model_check import leave_one_out
from loopctl.pareto import hypervolume_2d, pareto_mask
from loopctl.progress import format_parameters
from loopctl.spec import CompositionParam, RangeParam, Spec
from loopctl.store import Store
from loopctl.tables import trial_rows


def write_report(store: Store, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    spec = verified_spec(store)
    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(store, spec)
    figures: list[tuple[str, str, Any]] = []
    if len(spec.objectives) == 1:
        figures.append(("best-so-far", "Best value so far", _best_so_far(store, spec)))
    else:
        figures.append(("pareto", "Pareto front and hypervolume", _pareto(store, spec)))
    against = "the objective" if len(spec.objectives) == 1 else "each objective"
    figures.append(("parameters", f"Each parameter against {against}", _params(store, spec)))
    loo = _loo(store, spec)
    if loo is not None:
        figures.append(("model", "Model check: leave-one-out prediction vs observation", loo))
    parts = []
    for name, title, fig in figures:
        png = out / f"{name}.png"
        fig.savefig(png, dpi=110, bbox_inches="tight")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        data = base64.b64encode(buf.getvalue()).decode()
        parts.append(
            f"<h2>{html.escape(title)}</h2><img alt='{name}' src='data:image/png;base64,{data}'>"
        )
        import matplotlib.pyplot as plt

        plt.close(fig)
    page = out / "report.html"
    page.write_text(_page(spec, store, parts, rows))
    return page


def _series(store: Store, spec: Spec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Completed trials in order: number, first objective value, origin."""
    name = spec.objectives[0].name
    rows = store.conn.execute(
        "SELECT t.number, o.value, t.origin, t.proposal_id FROM trials t JOIN observations o "
        "ON o.trial_id = t.id AND o.metric = ? WHERE t.status = 'completed' ORDER BY t.number",
        (name,),
    ).fetchall()
    strategies = {p["id"]: p["strategy"] for p in store.proposals()}
    kinds = [r[2] if r[2] == "imported" else strategies.get(r[3], r[2]) for r in rows]
    return (np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=float), kinds)


def _axis_label(o: Any) -> str:
    return f"{o.name} ({o.unit})" if o.unit else o.name


def _best_so_far(store: Store, spec: Spec) -> Any:
    import matplotlib.pyplot as plt

    o = spec.objectives[0]
    n, y, kinds = _series(store, spec)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(y):
        best = np.minimum.accumulate(y) if o.goal == "minimize" else np.maximum.accumulate(y)
        for kind, marker in (("sobol", "s"), ("imported", "^"), ("botorch", "o")):
            sel = [k == kind for k in kinds]
            if any(sel):
                label = {"sobol": "initial design (Sobol)", "botorch": "GP + log-noisy EI"}
                ax.scatter(
                    n[sel], y[sel], marker=marker, s=22, alpha=0.7, label=label.get(kind, kind)
                )
        ax.step(n, best, where="post", color="black", label="best so far")
        initial = [i for i, k in zip(n, kinds, strict=True) if k == "sobol"]
        if initial:
            ax.axvspan(min(initial) - 0.5, max(initial) + 0.5, color="grey", alpha=0.12)
    ax.set_xlabel("trial number")
    ax.set_ylabel(_axis_label(o))
    ax.set_title(f"{spec.name}: {o.goal} {o.name} (shaded: initial design)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _pareto(store: Store, spec: Spec) -> Any:
    import matplotlib.pyplot as plt

    o1, o2 = spec.objectives[0], spec.objectives[1]
    obs = store.observations()
    pts = np.array(
        [[v[o1.name][0], v[o2.name][0]] for v in obs.values() if o1.name in v and o2.name in v]
    )
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if len(pts):
        minimise = pts * -np.array([o1.sign, o2.sign])
        front = np.array(pareto_mask(minimise))
        ax.scatter(pts[~front, 0], pts[~front, 1], s=18, alpha=0.5, label="dominated")
        ax.scatter(pts[front, 0], pts[front, 1], s=30, color="C3", label="Pareto front")
        ref = minimise.max(axis=0)
        hv = [hypervolume_2d(minimise[: i + 1], ref) for i in range(len(minimise))]
        ax2.plot(np.arange(1, len(hv) + 1), hv, color="black")
    ax.set_xlabel(f"{_axis_label(o1)}, {o1.goal}")
    ax.set_ylabel(f"{_axis_label(o2)}, {o2.goal}")
    ax.set_title(f"{spec.name}: completed trials")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2.set_title("hypervolume of the observed front")
    ax2.set_xlabel("completed trials")
    ax2.set_ylabel("hypervolume (reference: worst observed)")
    ax2.grid(alpha=0.3)
    return fig


def _columns(spec: Spec) -> list[tuple[str, str, bool]]:
    """(label, key, log scale) of every numeric coordinate a person would plot against; a
    range searched on a log scale is drawn on one, or its low decades are a smudge."""
    cols = []
    for p in spec.space:
        if isinstance(p, CompositionParam):
            cols += [(f"{p.name}: fraction {e}", f"{p.name}.{e}", False) for e in p.elements]
        elif p.type != "fixed":
            unit = getattr(p, "unit", None)
            label = f"{p.name} ({unit})" if unit else p.name
            cols.append((label, p.name, isinstance(p, RangeParam) and p.log))
    return cols


def _params(store: Store, spec: Spec) -> Any:
    """A panel per parameter and objective: each objective's panels start a row of their own,
    so with two objectives neither hides behind the first."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = [r for r in trial_rows(store, spec) if r["status"] == "completed"]
    cols = _columns(spec)
    k = max(1, len(cols))
    ncol = min(3, k)
    per = (k + ncol - 1) // ncol  # rows of panels per objective
    fig, axes = plt.subplots(
        per * len(spec.objectives),
        ncol,
        figsize=(4 * ncol, 3.2 * per * len(spec.objectives)),
        squeeze=False,
    )
    for j, o in enumerate(spec.objectives):
        block = list(axes[j * per : (j + 1) * per].flat)
        for ax, (label, key, log) in zip(block, cols, strict=False):
            done = [r for r in rows if r[o.name] is not None]
            xs = [r[key] for r in done]
            ys = [r[o.name] for r in done]
            if xs and isinstance(xs[0], str):
                cats = sorted(set(xs))
                xs = [cats.index(x) for x in xs]
                ax.set_xticks(range(len(cats)), cats, rotation=30)
            ax.scatter(xs, ys, s=16, alpha=0.7)
            if log:
                ax.set_xscale("log")
                low, high = ax.get_xlim()
                if high < 100 * low:  # within two decades matplotlib's 2x10^0 labels overlap
                    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                    ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel(_axis_label(o))
            ax.grid(alpha=0.3)
        for ax in block[len(cols) :]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def _loo(store: Store, spec: Spec) -> Any | None:
    """Leave-one-out predictions of the campaign's GP (:mod:`loopctl.model_check`)."""
    loo = leave_one_out(store, spec)
    if loo is None:
        return None
    import matplotlib.pyplot as plt

    o = spec.objectives[0]
    y, mu, sd = loo.observed, loo.predicted, loo.sd
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.errorbar(
        y,
        mu,
        yerr=2 * sd,
        fmt="o",
        ms=4,
        alpha=0.7,
        capsize=2,
        label="prediction without that trial (±2 sd)",
    )
    lo, hi = float(min(y.min(), mu.min())), float(max(y.max(), mu.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="perfect prediction")
    ax.set_title(f"{100 * loo.within_2sd:.0f}% of observations within 2 sd")
    ax.set_xlabel(f"observed {_axis_label(o)}")
    ax.set_ylabel(f"predicted {_axis_label(o)}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _page(spec: Spec, store: Store, figures: list[str], rows: list[dict[str, Any]]) -> str:
    counts = ledger.run_counts(store)
    best = ledger.best(store, spec)
    head = (
        f"<p>{html.escape(spec.description)}</p><p>trials: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + "</p>"
    )
    if len(spec.objectives) > 1:
        front = ledger.pareto(store, spec)
        names = [o.name for o in spec.objectives]
        head += (
            f"<p>Pareto set: {len(front)} trials (no other trial is better on every objective)</p>"
        )
        head += "<table><tr><th>trial</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names)
        head += "<th>parameters</th></tr>"
        for p in front:
            head += f"<tr><td>{p['trial_id']}</td>" + "".join(
                f"<td>{p['outcomes'][n]:.6g}</td>" for n in names
            )
            head += f"<td>{html.escape(format_parameters(p['parameters']))}</td></tr>"
        head += "</table>"
    elif best is not None:
        head += (
            f"<p>best: {html.escape(best['objective'])} = {best['value']:.6g} "
            f"(trial {best['trial_id']})</p>"
        )
    cols = list(rows[0]) if rows else []
    table = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    for r in rows:
        table += "<tr>" + "".join(f"<td>{html.escape(_cell(r[c]))}</td>" for c in cols) + "</tr>"
    table += "</table>"
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:2px 6px}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec.name)}"
        f"</title><style>{style}</style></head><body><h1>Campaign {html.escape(spec.name)}"
        f"</h1>{head}{''.join(figures)}<h2>Trials</h2>{table}</body></html>\n"
    )


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
