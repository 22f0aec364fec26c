"""The robot driver: campaign trials as jobs on a lab robot's HTTP API.

A small declarative mapping (the campaign's `robot:` section or `--config FILE`)
says which job field takes which parameter and where each objective is in a
finished job. The driver submits, polls, cancels on CANCEL, reports the robot's
failures with its reasons, and on an emergency stop fails its running trials
(retryable) and waits for the robot to be reset before it submits again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
import yaml
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from loopctl.campaign_yaml import load_yaml
from loopctl.drivers.base import CannotEvaluate, Driver, TrialFailed

DEFAULTS = {"poll_interval": 0.2, "job_timeout": 600.0, "http_timeout": 5.0}


class RobotDriver(Driver):
    kind = "robot"
    version = "1"

    def __init__(
        self,
        connect: str,
        *,
        robot_url: str | None = None,
        config: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connect, **kwargs)
        self.robot_url = robot_url
        self.config_file = config
        self.mapping: dict[str, Any] = {}
        self._local = threading.local()

    # ------------------------------------------------------------------ set-up

    def setup(self, settings: Mapping[str, Any]) -> None:
        conf = dict(settings.get("robot") or {})
        if self.config_file:
            try:
                conf.update(load_yaml(Path(self.config_file).read_text()) or {})
            except (OSError, yaml.YAMLError) as exc:
                raise CannotEvaluate(f"cannot read {self.config_file}: {exc}") from None
        if self.robot_url:
            conf["url"] = self.robot_url
        self.mapping = check_mapping(conf, settings)

    def _http(self) -> requests.Session:
        """One session per worker thread; connection errors are retried with back-off
        (the request never reached the robot, so even a POST is safe to repeat)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            retry = Retry(
                total=6,
                connect=6,
                read=0,
                status=0,
                other=0,
                backoff_factor=0.2,
                allowed_methods=None,
            )
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            self._local.session = session
        return session

    def _call(self, method: str, path: str, **kw: Any) -> requests.Response:
        try:
            return self._http().request(
                method, self.mapping["url"] + path, timeout=self.mapping["http_timeout"], **kw
            )
        except requests.RequestException as exc:
            raise TrialFailed(f"robot unreachable: {type(exc).__name__}", retryable=True) from None

    # ------------------------------------------------------------------ a trial

    def evaluate(self, parameters: dict[str, Any]) -> dict[str, Any]:
        trial = self.current_trial()
        job = {
            field: parameters[src] if isinstance(src, str) else src["value"]
            for field, src in self.mapping["job"].items()
        }
        job_id = self._submit(job, trial)
        deadline = time.monotonic() + self.mapping["job_timeout"]
        while True:
            time.sleep(self.mapping["poll_interval"])
            if self.cancelled(trial):
                self._call("DELETE", f"/jobs/{job_id}")
                raise TrialFailed("cancelled by the controller", retryable=False)
            r = self._call("GET", f"/jobs/{job_id}")
            if r.status_code == 404:
                raise TrialFailed("the robot lost the job (was it restarted?)", retryable=True)
            state = r.json()
            if state["state"] == "done":
                return {name: dig(state, path) for name, path in self.mapping["outcomes"].items()}
            if state["state"] in ("failed", "aborted", "cancelled"):
                raise TrialFailed(
                    f"robot: {state.get('reason') or state['state']}",
                    retryable=bool(state.get("retryable")),
                )
            if time.monotonic() > deadline:
                self._call("DELETE", f"/jobs/{job_id}")
                raise TrialFailed("robot job timed out", retryable=True)

    def _submit(self, job: dict[str, Any], trial: str) -> str:
        """POST the job; while the robot is in emergency stop, wait for its reset."""
        while True:
            r = self._call("POST", "/jobs", json=job)
            if r.status_code == 201:
                return str(r.json()["id"])
            if r.status_code == 409:  # emergency stop: pause until an operator resets it
                if self.cancelled(trial):
                    raise TrialFailed("cancelled by the controller", retryable=False)
                time.sleep(self.mapping["poll_interval"])
                continue
            raise TrialFailed(f"robot refused the job: {r.text[:500]}", retryable=False)


def dig(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            raise TrialFailed(f"robot result has no {path!r}", retryable=False)
        doc = doc[part]
    return doc


def check_mapping(conf: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a mapping can get wrong, found before the first job is sent."""
    if not conf.get("url"):
        raise CannotEvaluate("no robot URL: give --robot-url or robot.url")
    params = {p.get("name") for p in settings.get("parameters", [])}
    objectives = set(settings.get("objectives", []))
    job, outcomes = conf.get("job"), conf.get("outcomes")
    if not isinstance(job, Mapping) or not job:
        raise CannotEvaluate(
            "robot.job must map each job field to a parameter name or {value: constant}"
        )
    for field, src in job.items():
        if isinstance(src, str) and src not in params:
            raise CannotEvaluate(f"robot.job.{field}: {src!r} is not a campaign parameter")
        if not isinstance(src, (str, Mapping)) or (isinstance(src, Mapping) and "value" not in src):
            raise CannotEvaluate(f"robot.job.{field}: give a parameter name or {{value: X}}")
    if not isinstance(outcomes, Mapping) or set(outcomes) != objectives:
        raise CannotEvaluate(
            f"robot.outcomes must give a result path for each objective "
            f"({', '.join(sorted(objectives))})"
        )
    out: dict[str, Any] = dict(DEFAULTS)
    out.update({k: float(conf[k]) for k in DEFAULTS if k in conf})
    out.update(url=str(conf["url"]).rstrip("/"), job=dict(job), outcomes=dict(outcomes))
    return out
