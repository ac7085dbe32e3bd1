"""``wait``: one line per change, stops on ready / failed / timeout; a fake clock, never real time."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from infra.operations.status import Check, EnvironmentStatus
from infra.operations.wait import Waiter, format_duration, parse_duration
from tests.infra.operations.local_servers import MotoServer, RecordedAws, serving
from tests.support.operations import REGION, Deployed, deployment_file, load, run_cli


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _status(*checks: tuple[str, ...]) -> EnvironmentStatus:
    """Checks from (area, name, state[, summary]); the summary defaults to the state."""
    return EnvironmentStatus(
        deployment="pdstack",
        account="123456789012",
        region=REGION,
        checks=[Check(area=c[0], name=c[1], state=c[2], summary=c[3] if len(c) > 3 else c[2]) for c in checks],
    )


def _waiter(
    observations: list[EnvironmentStatus], timeout: float = 3600, interval: float = 30
) -> tuple[Waiter, io.StringIO]:
    out = io.StringIO()
    clock = FakeClock()
    feed = iter(observations)
    last: list[EnvironmentStatus] = []

    def observe() -> EnvironmentStatus:
        last[:] = [next(feed, last[0] if last else observations[-1])]
        return last[0]

    return Waiter(observe=observe, timeout=timeout, interval=interval, out=out, clock=clock, sleep=clock.sleep), out


@pytest.mark.parametrize("text, seconds", [("45m", 2700), ("1h30m", 5400), ("90s", 90), ("2h", 7200), ("1m30s", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "45", "45 minutes", "1d", "0m", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5, 90, 2700, 5400)] == ["5s", "1m30s", "45m00s", "1h30m"]


def test_quiet_one_line_per_change_then_ready() -> None:
    pending = ("nodegroup", "p5", "pending", "CREATING, desired 2")
    waiter, out = _waiter(
        [
            _status(("stack", "pdstack-cluster", "ready"), pending),
            _status(("stack", "pdstack-cluster", "ready"), pending),
            _status(("stack", "pdstack-cluster", "ready"), pending),
            _status(("stack", "pdstack-cluster", "ready"), ("nodegroup", "p5", "ready", "ACTIVE, desired 2")),
        ]
    )

    assert waiter.run() == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(
        "waiting up to 1h00m for pdstack in us-east-1 (checking every 30s); not ready yet: nodegroup p5"
    )
    assert lines[1:] == [
        "[0s] nodegroup p5: pending (CREATING, desired 2)",
        "[1m30s] nodegroup p5: ready (ACTIVE, desired 2)",
        "[1m30s] ready: every part of the deployment is up",
    ]


def test_stops_early_when_something_failed_for_good() -> None:
    waiter, out = _waiter(
        [
            _status(("stack", "pdstack-image", "pending", "CREATE_IN_PROGRESS")),
            _status(("stack", "pdstack-image", "failed", "ROLLBACK_COMPLETE")),
        ]
    )

    assert waiter.run() == 1
    assert out.getvalue().splitlines()[-1] == (
        "[30s] stopped waiting: stack pdstack-image ROLLBACK_COMPLETE — this will not become ready by itself"
    )


def test_timeout_says_what_it_still_waits_for_and_how_to_resume() -> None:
    waiter, out = _waiter([_status(("hyperpod", "pdstack-hp", "pending", "Creating"))], timeout=300, interval=60)

    assert waiter.run() == 1
    assert out.getvalue().splitlines()[-1] == (
        "timed out after 5m00s; still waiting for: hyperpod pdstack-hp. "
        "Run the same command again to keep waiting from here."
    )
    assert len(out.getvalue().splitlines()) == 3  # what it waits for, the one state, the timeout: no spam


def test_wait_follows_hyperpod_deep_health_checks_to_ready(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI end to end: moto for the stacks, EKS, image and build; recorded SageMaker answers over three polls."""
    path = deployment_file(tmp_path, "hyperpod.yaml")
    Deployed(load(path)).everything()
    clock = FakeClock()
    monkeypatch.setattr("infra.operations.wait._now", clock)
    monkeypatch.setattr("infra.operations.wait._pause", clock.sleep)
    with serving(RecordedAws.load("hyperpod-deep-health-in-progress.json")) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", url)
        run = run_cli("wait", "--deployment", str(path), "--region", REGION, "--timeout", "45m", "--interval", "1m")

    assert run.code == 0, run.out + run.err
    lines = run.out.splitlines()
    assert "not ready yet: hyperpod pdstack-hp, hyperpod-node i-0a1b2c3d4e5f60718 (p5)" in lines[0]
    changes = [line for line in lines if line.startswith("[")]
    assert changes == [
        "[0s] hyperpod pdstack-hp: pending (Creating, 0 of 2 nodes Running)",
        "[0s] hyperpod-node i-0a1b2c3d4e5f60718 (p5): pending (DeepHealthCheckInProgress) — InstanceStress running",
        "[0s] hyperpod-node i-0c4d9e2f7a1b3c5d7 (p5): pending (DeepHealthCheckInProgress) — InstanceStress running",
        "[2m00s] hyperpod pdstack-hp: ready (InService, 2 of 2 nodes Running)",
        "[2m00s] hyperpod-node i-0a1b2c3d4e5f60718 (p5): ready (Running)",
        "[2m00s] hyperpod-node i-0c4d9e2f7a1b3c5d7 (p5): ready (Running)",
        "[2m00s] ready: every part of the deployment is up",
    ]
