"""A simulated thin-film synthesis robot behind a real HTTP API (`loopctl robot-sim`).

It stands in for a lab robot in the demo and the tests: jobs are queued and run
a few at a time with realistic latency, fail now and then with the reasons real
robots give, can be cancelled, and an emergency stop aborts everything until a
reset. Measurements come from a hidden response surface with noise.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SOLVENTS = ("chlorobenzene", "toluene", "dmf", "dmso")
RANGES = {  # numeric job field -> (low, high)
    "spin_speed": (500.0, 6000.0),  # rpm
    "anneal_temperature": (60.0, 300.0),  # degC
    "anneal_time": (1.0, 60.0),  # min
    "precursor_ratio": (0.5, 2.0),
}
FIELDS = [*RANGES, "solvent"]
FAILURES = (("clogged nozzle", True), ("out of precursor", False))


def measure(job: dict[str, Any], rng: random.Random, noise: float) -> dict[str, float]:
    """The hidden truth: a figure of merit peaking near 3000 rpm, 180 degC, 20 min, ratio
    1.2 in DMF; stability that prefers low temperatures and long anneals."""
    s = (job["spin_speed"] - 3000) / 1500
    t = (job["anneal_temperature"] - 180) / 60
    a = math.log(job["anneal_time"] / 20)
    r = (job["precursor_ratio"] - 1.2) / 0.4
    bonus = {"dmf": 1.0, "dmso": 0.85, "chlorobenzene": 0.7, "toluene": 0.5}[job["solvent"]]
    fom = 20 * bonus * math.exp(-(s**2 + t**2 + 0.8 * a**2 + r**2) / 2)
    stab = 1 / (1 + math.exp((job["anneal_temperature"] - 150) / 40)) + 0.1 * a
    return {
        "figure_of_merit": fom + rng.gauss(0, noise * 20),
        "stability": stab + rng.gauss(0, noise),
    }


@dataclass
class Job:
    id: str
    params: dict[str, Any]
    state: str = "queued"  # queued, running, done, failed, cancelled, aborted
    result: dict[str, float] | None = None
    reason: str | None = None
    retryable: bool | None = None
    submitted: float = field(default_factory=time.time)


class Robot:
    """The robot's state; every method is called under one lock."""

    def __init__(
        self, latency: float, fail_rate: float, seed: int, slots: int, noise: float
    ) -> None:
        self.latency, self.fail_rate, self.slots, self.noise = latency, fail_rate, slots, noise
        self.rng = random.Random(seed)
        self.jobs: dict[str, Job] = {}
        self.estop = False
        self.refused = 0  # jobs submitted during an emergency stop
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        for _ in range(slots):
            threading.Thread(target=self._work, daemon=True).start()

    def submit(self, params: dict[str, Any]) -> Job:
        clean = validate_job(params)
        with self.lock:
            if self.estop:
                self.refused += 1
                raise RobotBusy("emergency stop is active; POST /reset first")
            job = Job(uuid.uuid4().hex[:12], clean)
            self.jobs[job.id] = job
            self.wake.notify()
            return job

    def cancel(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs[job_id]
            if job.state in ("queued", "running"):
                job.state, job.reason = "cancelled", "cancelled on request"
            return job

    def emergency_stop(self) -> int:
        with self.lock:
            self.estop = True
            hit = 0
            for job in self.jobs.values():
                if job.state in ("queued", "running"):
                    job.state, job.reason, job.retryable = "aborted", "emergency stop", True
                    hit += 1
            return hit

    def reset(self) -> None:
        with self.lock:
            self.estop = False
            self.wake.notify_all()

    def status(self) -> dict[str, Any]:
        with self.lock:
            states = [j.state for j in self.jobs.values()]
            return {
                "state": "estop" if self.estop else "ready",
                "slots": self.slots,
                "queued": states.count("queued"),
                "running": states.count("running"),
                "finished": len(states) - states.count("queued") - states.count("running"),
                "refused": self.refused,
            }

    def _work(self) -> None:
        while True:
            with self.lock:
                job = None
                while job is None:
                    if not self.estop:
                        job = next((j for j in self.jobs.values() if j.state == "queued"), None)
                    if job is None:
                        self.wake.wait(0.5)
                job.state = "running"
                duration = self.latency * self.rng.uniform(0.8, 1.2)
                fails = self.rng.random() < self.fail_rate
                failure = self.rng.choice(FAILURES)
                result = measure(job.params, self.rng, self.noise)
            time.sleep(duration)
            with self.lock:
                if job.state != "running":  # cancelled or aborted meanwhile
                    continue
                if fails:
                    job.state, job.reason, job.retryable = "failed", failure[0], failure[1]
                else:
                    job.state, job.result = "done", result


class RobotBusy(Exception):
    pass


def validate_job(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ValueError("a job is a JSON object of its fields")
    unknown = sorted(set(params) - set(FIELDS))
    missing = sorted(set(FIELDS) - set(params))
    if unknown or missing:
        raise ValueError(f"unknown fields {unknown}, missing fields {missing}")
    out: dict[str, Any] = {}
    for name, (lo, hi) in RANGES.items():
        v = params[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ValueError(f"{name}: {v!r} is not a number in [{lo:g}, {hi:g}]")
        out[name] = float(v)
    if params["solvent"] not in SOLVENTS:
        raise ValueError(f"solvent: {params['solvent']!r} is not one of {list(SOLVENTS)}")
    out["solvent"] = params["solvent"]
    return out


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "parameters": job.params,
        "result": job.result,
        "reason": job.reason,
        "retryable": job.retryable,
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Simulated thin-film robot", "version": "1"},
    "paths": {
        "/jobs": {
            "post": {
                "summary": "queue a job",
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}
                    }
                },
                "responses": {
                    "201": {"description": "queued"},
                    "409": {"description": "e-stop"},
                    "422": {"description": "invalid job"},
                },
            }
        },
        "/jobs/{id}": {
            "get": {
                "summary": "a job's state and, when done, its result",
                "responses": {
                    "200": {"description": "the job"},
                    "404": {"description": "no such job"},
                },
            },
            "delete": {
                "summary": "cancel a queued or running job",
                "responses": {"200": {"description": "the job"}},
            },
        },
        "/status": {
            "get": {
                "summary": "ready or estop; queue length; jobs refused during an emergency stop",
                "responses": {"200": {"description": "status"}},
            }
        },
        "/estop": {
            "post": {
                "summary": "emergency stop: abort every job until reset",
                "responses": {"200": {"description": "stopped"}},
            }
        },
        "/reset": {
            "post": {
                "summary": "clear the emergency stop",
                "responses": {"200": {"description": "ready"}},
            }
        },
    },
    "components": {
        "schemas": {
            "JobRequest": {
                "type": "object",
                "required": FIELDS,
                "properties": {
                    "spin_speed": {"type": "number", "minimum": 500, "maximum": 6000},
                    "anneal_temperature": {"type": "number", "minimum": 60, "maximum": 300},
                    "anneal_time": {"type": "number", "minimum": 1, "maximum": 60},
                    "precursor_ratio": {"type": "number", "minimum": 0.5, "maximum": 2},
                    "solvent": {"type": "string", "enum": list(SOLVENTS)},
                },
            }
        }
    },
}


def make_handler(robot: Robot) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:  # quiet unless asked
            pass

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _job(self) -> Job | None:
            job = robot.jobs.get(self.path.rsplit("/", 1)[-1])
            if job is None:
                self._send(404, {"error": "no such job"})
            return job

        def do_GET(self) -> None:
            if self.path == "/openapi.json":
                self._send(200, OPENAPI)
            elif self.path == "/status":
                self._send(200, robot.status())
            elif self.path == "/jobs":
                with robot.lock:
                    self._send(200, [job_json(j) for j in robot.jobs.values()])
            elif self.path.startswith("/jobs/") and (job := self._job()) is not None:
                self._send(200, job_json(job))
            elif not self.path.startswith("/jobs/"):
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            if self.path == "/jobs":
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    job = robot.submit(json.loads(self.rfile.read(length) or b"null"))
                except RobotBusy as exc:
                    self._send(409, {"error": str(exc)})
                except (ValueError, TypeError) as exc:
                    self._send(422, {"error": str(exc)})
                else:
                    self._send(201, job_json(job))
            elif self.path == "/estop":
                self._send(200, {"aborted": robot.emergency_stop(), "state": "estop"})
            elif self.path == "/reset":
                robot.reset()
                self._send(200, {"state": "ready"})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_DELETE(self) -> None:
            if self.path.startswith("/jobs/") and self._job() is not None:
                self._send(200, job_json(robot.cancel(self.path.rsplit("/", 1)[-1])))

    return Handler


def serve(
    port: int, latency: float, fail_rate: float, seed: int, slots: int = 2, noise: float = 0.02
) -> None:
    robot = Robot(latency, fail_rate, seed, slots, noise)
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(robot))
    print(f"robot-sim listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
