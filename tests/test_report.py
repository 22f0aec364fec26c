"""`loopctl report` and the Parquet export, from real campaign databases."""

from __future__ import annotations

from pathlib import Path

import pandas
import pytest

from loopctl import Campaign
from tests.conftest import ROOT, loopctl
from tests.specs import branin, branin_fn

pytestmark = pytest.mark.slow


def test_single_objective_report_and_parquet(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with Campaign.create(branin(tmp_path), db) as c:
        for _ in range(8):
            (t,) = c.ask()
            c.tell(t.id, {"y": branin_fn(t.parameters["x1"], t.parameters["x2"])})
    out = tmp_path / "rep"
    r = loopctl("report", str(db), "--out", str(out))
    assert "3 figures" in r.stdout
    for name in ("best-so-far", "parameters", "model"):
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # self-contained
    assert "T0008" in page and "Best value so far" in page
    pq = tmp_path / "t.parquet"
    loopctl("export", str(db), "--format", "parquet", "--out", str(pq))
    df = pandas.read_parquet(pq)
    assert len(df) == 8 and df["y"].dtype == float and set(df["status"]) == {"completed"}
    bad = loopctl("export", str(db), "--format", "parquet", check=False)
    assert bad.returncode == 1 and "--out" in bad.stderr


def test_two_objective_report_has_a_pareto_front(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    spec = branin(
        tmp_path,
        objectives=[{"name": "y", "goal": "minimize"}, {"name": "z", "goal": "maximize"}],
        strategy={"method": "sobol"},
        oracle=None,
    )
    with Campaign.create(spec, db) as c:
        for t in c.ask(12):
            c.tell(t.id, {"y": t.parameters["x1"] ** 2, "z": t.parameters["x2"]})
    out = tmp_path / "rep"
    loopctl("report", str(db), "--out", str(out))
    assert (out / "pareto.png").exists() and not (out / "model.png").exists()
    st = loopctl("status", str(db)).stdout
    assert "Pareto set:" in st


def test_parameters_figure_uses_log_axes_and_every_objective(tmp_path: Path) -> None:
    """anneal_time is searched on a log scale in [1, 60] min: it is drawn on a log axis; and
    stability, the second objective, gets panels of its own beside figure_of_merit's."""
    import matplotlib

    matplotlib.use("Agg")
    from loopctl.integrity import verified_spec
    from loopctl.report import _params
    from loopctl.store import Store

    db = tmp_path / "films.db"
    spec = ROOT / "campaigns" / "thin-film-robot.yaml"
    with Campaign.create(spec, db) as c:
        for i, t in enumerate(c.ask(6)):
            c.tell(t.id, {"figure_of_merit": float(i), "stability": float(6 - i)})
    with Store.open(db, readonly=True) as store:
        fig = _params(store, verified_spec(store))
    panels = [(ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale()) for ax in fig.axes if ax.axison]
    assert len(panels) == 2 * 5
    assert {y for _, y, _ in panels} == {"figure_of_merit", "stability"}
    for x, _, scale in panels:
        assert scale == ("log" if x == "anneal_time (min)" else "linear"), panels
    out = tmp_path / "rep"
    loopctl("report", str(db), "--out", str(out))
    assert "Each parameter against each objective" in (out / "report.html").read_text()


def test_the_pareto_set_is_listed_with_every_objective(tmp_path: Path) -> None:
    """y minimised, z maximised: T1 (1, 3), T2 (3, 5), T3 (2, 4) trade off; T4 (2, 3) is
    beaten by T3 and T5 (3, 5) ties T2 (neither beats the other); T6 has the best y, 0.5,
    with the worst z."""
    import json

    db = tmp_path / "p.db"
    spec = branin(
        tmp_path,
        objectives=[{"name": "y", "goal": "minimize"}, {"name": "z", "goal": "maximize"}],
        strategy={"method": "sobol"},
        oracle=None,
    )
    values = [(1, 3), (3, 5), (2, 4), (2, 3), (3, 5), (0.5, 0)]
    with Campaign.create(spec, db) as c:
        for t, (y, z) in zip(c.ask(6), values, strict=True):
            c.tell(t.id, {"y": y, "z": z})
        front = c.pareto()
    assert [p["trial_id"] for p in front] == ["T0006", "T0001", "T0003", "T0002", "T0005"]
    assert front[1]["outcomes"] == {"y": 1.0, "z": 3.0} and "x1" in front[1]["parameters"]
    st = json.loads(loopctl("status", str(db), "--json").stdout)
    assert [p["trial_id"] for p in st["pareto"]] == [p["trial_id"] for p in front]
    text = loopctl("status", str(db)).stdout
    assert "Pareto set: 5 trials" in text and "T0003: y=2, z=4" in text and "T0004" not in text
    out = tmp_path / "rep"
    loopctl("report", str(db), "--out", str(out))
    page = (out / "report.html").read_text()
    assert "Pareto set: 5 trials" in page and "<td>T0003</td><td>2</td><td>4</td>" in page
