"""`loopctl report` and the Parquet export, from real campaign databases."""

from __future__ import annotations

from pathlib import Path

import pandas
import pytest

from loopctl import Campaign
from tests.conftest import loopctl
from tests.specs import branin
from tests.test_campaign_api import branin_fn

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
