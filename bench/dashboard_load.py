"""`loopctl dashboard` on a large campaign: start-up time, page weight, page load per view.

Builds a campaign of N completed Sobol trials through the Python API (proposals, dispatches
and results recorded as a controller records them), starts the real `loopctl dashboard`
process on it, and loads each view in Debian's headless Chromium (Selenium), timing from
navigation start to the page's first complete drawing (``document.body.dataset.ready``).
Before the page loads, the model's leave-one-out check: how long its worker takes from
the request (torch's first import included) and to fit and predict, and the slowest
answer of ``/api/summary`` meanwhile (the server must stay responsive).

    python bench/dashboard_load.py [--trials 10000] [--objectives 1] [--db PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
VIEWS = ("progress", "results", "trials", "why")


def build(db: Path, n: int, objectives: int) -> None:
    import numpy as np

    from loopctl import Campaign
    from loopctl.drivers.oracle_models import branin

    data = yaml.safe_load((ROOT / "campaigns" / "branin.yaml").read_text())
    data.pop("oracle")
    data["strategy"] = {"method": "sobol"}
    data["budget"] = {"trials": n}
    if objectives == 2:
        data["objectives"] = [{"name": "y", "goal": "minimize"}, {"name": "z", "goal": "minimize"}]
    spec = db.with_suffix(".yaml")
    spec.write_text(yaml.safe_dump(data))
    with Campaign.create(spec, db) as c:
        made = 0
        while made < n:
            batch = c.ask(min(100, n - made))
            made += len(batch)
            for t in batch:
                x = np.array([t.parameters["x1"], t.parameters["x2"]])
                out = {"y": float(branin(x))}
                if objectives == 2:
                    out["z"] = float((x[0] - 2) ** 2)
                c.tell(t.id, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--objectives", type=int, choices=(1, 2), default=1)
    ap.add_argument("--db", type=Path, help="reuse (or build once into) this database")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    db = args.db or tmp / "big.db"
    if not db.exists():
        t0 = time.monotonic()
        build(db, args.trials, args.objectives)
        print(f"built {args.trials} trials in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopctl", "dashboard", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            m = re.search(r"at (http://\S+/)", line)
            if m:
                url = m.group(1)
            if line.startswith("ready"):
                break
        with urllib.request.urlopen(url + "api/config") as r:
            r.read()
        startup = time.monotonic() - t0
        sizes = {}
        for path in (
            "",
            "static/app.js",
            "static/style.css",
            "api/summary",
            "api/series",
            "api/trials?size=25",
            "api/trial/T0001",
        ):
            t1 = time.monotonic()
            with urllib.request.urlopen(url + path) as r:
                sizes[path or "index.html"] = {
                    "bytes": len(r.read()),
                    "seconds": round(time.monotonic() - t1, 3),
                }
        check = model_check(url)
        loads = page_loads(url)
    finally:
        proc.terminate()
        proc.wait(10)
    static = sum(sizes[k]["bytes"] for k in ("index.html", "static/app.js", "static/style.css"))
    print(
        json.dumps(
            {
                "trials": args.trials,
                "objectives": args.objectives,
                "startup_s": round(startup, 2),
                "page_bytes_static": static,
                "responses": sizes,
                "model_check": check,
                "page_load_s": loads,
            },
            indent=2,
        )
    )


def _get(url: str) -> tuple[dict[str, object], float]:
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=120) as r:
        return json.loads(r.read()), time.monotonic() - t0


def model_check(url: str) -> dict[str, object]:
    """The leave-one-out check from request to answer, polling the summary meanwhile."""
    t0 = time.monotonic()
    state, _ = _get(url + "api/model-check?compute=1")
    slowest = 0.0
    while state["state"] == "computing":
        _, took = _get(url + "api/summary")
        slowest = max(slowest, took)
        state, _ = _get(url + "api/model-check")
    wall = time.monotonic() - t0
    _, cached = _get(url + "api/model-check")
    return {
        "request_to_answer_s": round(wall, 2),
        "fit_and_predict_s": round(float(state.get("seconds") or 0), 2),  # type: ignore[arg-type]
        "slowest_summary_meanwhile_s": round(slowest, 3),
        "cached_answer_s": round(cached, 3),
        "within_2sd": state.get("within_2sd"),
        "error": state.get("error") or state.get("unavailable"),
    }


def page_loads(url: str) -> dict[str, float]:
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,1100")
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    out = {}
    try:
        drv.get(url)  # a first visit warms the browser itself, not the page
        for view in VIEWS:
            target = f"{url}#{view}" + ("/T0001" if view == "why" else "")
            drv.get("about:blank")
            drv.get(target)
            end = time.monotonic() + 60
            while not drv.execute_script("return document.body.dataset.ready") and (
                time.monotonic() < end
            ):
                time.sleep(0.02)
            ms = drv.execute_script("return document.body.dataset.readyMs")
            out[view] = round(int(ms) / 1000, 3)
    finally:
        drv.quit()
    return out


if __name__ == "__main__":
    main()
