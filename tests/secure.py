"""Provisioned networks on the real broker: a vhost and one user per school each, made as
`vhs-sync broker provision` makes them.

`rabbitmqctl` costs a second or two a call, so a test module makes all its vhosts with one
`import_definitions` and removes them, with their users, with one more call.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from adapter.config import DatabaseSection, PeerSchool, SchoolSection, Settings
from adapter.ops import provision

SCHOOLS = [("vhs-sr", "VHS SR"), ("vhs-ka", "vhs Karlsruhe"), ("vhs-hof", "vhs Hofer Land")]


@dataclass
class SecureNetwork:
    """One provisioned network in a vhost of its own."""

    vhost: str
    network: str
    admin_url: str
    users: dict[str, str]
    passwords: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        base = URL(self.admin_url)
        for school, user in self.users.items():
            self.urls[school] = str(base.with_user(user).with_password(self.passwords[school]))


def _settings(network: str, url: str, users: dict[str, str]) -> Settings:
    """A config of the master, naming every school with its user, as an operator writes it."""
    (own, name), *peers = SCHOOLS
    return Settings(
        school=SchoolSection(id=own, name=name),
        admin_db=DatabaseSection(url="sqlite://"),
        state_db=DatabaseSection(url="sqlite://"),
        broker={"url": str(URL(url).with_user(users[own])), "network": network},
        schools=[PeerSchool(id=i, name=n, broker_user=users[i]) for i, n in peers],
    )


def _rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["rabbitmqctl", *args], input=stdin, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def create(rabbitmq_url: str, count: int) -> list[SecureNetwork]:
    """`count` provisioned networks; the administrator of `rabbitmq_url` may do everything in
    their vhosts (to inspect and clean up)."""
    admin = URL(rabbitmq_url).user or "guest"
    made: list[SecureNetwork] = []
    merged: dict[str, list[Any]] = {}
    for _ in range(count):
        tag = uuid.uuid4().hex[:8]
        vhost, network = f"vhs-sync-test-{tag}", f"vhs-sync-test-{tag}"
        admin_url = str(URL(rabbitmq_url).with_path(f"/{vhost}"))
        users = {school: f"{tag}-{school}" for school, _ in SCHOOLS}
        passwords = {school: uuid.uuid4().hex for school in users}
        definitions = provision.definitions(_settings(network, admin_url, users), passwords)
        definitions["permissions"].append(
            {"user": admin, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
        )
        for key, values in definitions.items():
            merged.setdefault(key, []).extend(values)
        made.append(SecureNetwork(vhost, network, admin_url, users, passwords))
    _rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(merged))
    return made


def remove(networks: list[SecureNetwork]) -> None:
    """Delete the vhosts (with all in them) and the users of these networks, in one call."""
    if not networks:
        return

    def binaries(names: list[str]) -> str:
        return "[" + ", ".join(f'<<"{name}">>' for name in names) + "]"

    vhosts = binaries([n.vhost for n in networks])
    users = binaries([user for n in networks for user in n.users.values()])
    _rabbitmqctl(
        "eval",
        f'[rabbit_vhost:delete(V, <<"vhs-sync-tests">>) || V <- {vhosts}], '
        f'[rabbit_auth_backend_internal:delete_user(U, <<"vhs-sync-tests">>) || U <- {users}], ok.',
    )
