"""The deployment files are usable as far as this machine can tell without a Docker engine:
the compose file, the Dockerfile, the systemd unit and the Prometheus alert rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import adapter.ops.metrics  # noqa: F401 - registers the metrics
from adapter.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ("vhs-sr", "vhs-ka", "vhs-vs")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_starts_the_broker_postgresql_and_a_master_with_two_subscribers() -> None:
    """The compose network's adapters each mount a config that loads, name the two others
    as peers, keep their admin DB in the compose PostgreSQL (made by its init script), wait
    for the broker and PostgreSQL to be healthy, and publish distinct ports; the services
    the tests use stay on their usual ports."""
    services = compose()["services"]
    assert {"rabbitmq", "postgres", "mariadb", *ADAPTERS} <= set(services)
    assert services["rabbitmq"]["ports"][0] == "5672:5672"
    assert services["postgres"]["ports"] == ["5432:5432"]
    init = services["postgres"]["volumes"][0].split(":")[0]
    created = set(re.findall(r"CREATE DATABASE (\w+);", (ROOT / init).read_text()))
    ports = set()
    for name in ADAPTERS:
        service = services[name]
        assert service["profiles"] == ["network"]
        assert service["build"] == "."
        source, target, _ = next(v for v in service["volumes"] if v.endswith(":ro")).split(":")
        assert target == "/etc/vhs-sync/school.toml"
        settings = load_settings(ROOT / source)
        assert settings.school.id == name
        assert {peer.id for peer in settings.schools} == set(ADAPTERS) - {name}
        assert settings.admin_db.url.startswith("postgresql://postgres@postgres:5432/")
        assert settings.admin_db.url.rsplit("/", 1)[1] in created
        assert settings.broker.url.startswith("amqp://guest:guest@rabbitmq:5672/")
        assert (settings.metrics.host, settings.metrics.port) == ("0.0.0.0", 9464)
        assert service["depends_on"] == {
            "rabbitmq": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }
        ports.add(service["ports"][0].split(":")[0])
        assert service["entrypoint"][-1].endswith("exec vhs-sync run")
    assert len(ports) == len(ADAPTERS)


def test_the_dockerfile_runs_the_daemon_as_a_user_without_privileges() -> None:
    """python:3.11-slim, the package installed from the sources it copies, a non-root user,
    `vhs-sync run` by default and a health check on `/healthz`."""
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    instructions = [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    for kind, argument in instructions:
        if kind == "COPY":
            assert all((ROOT / source).exists() for source in argument.split()[:-1]), argument
    users = [argument for kind, argument in instructions if kind == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["vhs-sync"]') in instructions
    assert ("CMD", '["run"]') in instructions
    assert any(kind == "HEALTHCHECK" and "/healthz" in arg for kind, arg in instructions)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored
    assert "adapter" not in ignored


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong with the unit (its ExecStart pointed at
    this virtualenv's vhs-sync), a Type=notify service with a watchdog and a restart policy."""
    unit = (ROOT / "deploy" / "vhs-sync@.service").read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=vhs-sync"):
        assert setting in unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    here = Path(sys.executable).parent / "vhs-sync"
    instance = tmp_path / "vhs-sync@vhs-ka.service"
    instance.write_text(unit.replace("/opt/vhs-sync/bin/vhs-sync", str(here)))
    result = subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60, check=False
    )
    complaints = [line for line in result.stderr.splitlines() if instance.name in line]
    assert (result.returncode, complaints) == (0, []), result.stderr


def test_the_alert_rules_name_only_metrics_that_exist() -> None:
    """Every `vhs_sync_*` name in an alert's expression is a metric the adapter has."""
    shown = set()
    for family in REGISTRY.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        shown.add(family.name + suffix)
    rules = yaml.safe_load((ROOT / "docs" / "alerts.yml").read_text())["groups"][0]["rules"]
    named = {name for rule in rules for name in re.findall(r"vhs_sync_\w+", rule["expr"])}
    assert named
    assert named <= shown, named - shown


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    """`promtool test rules docs/alerts.test.yml` passes: each alert fires when it should
    and not before."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's package prometheus has it)")
    result = subprocess.run(
        [promtool, "test", "rules", str(ROOT / "docs" / "alerts.test.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
