"""`vhs-sync broker provision`: a broker set up for one network, one user per school.

From a school's config (the school and its `[[schools]]` peers, each with its broker user)
it writes a RabbitMQ definitions file, which `rabbitmqctl import_definitions` loads: the
network's vhost and topic exchange, each school's queues and dead-letter exchange, and each
school's user with the least it needs (DESIGN decision 8):

- configure: only server-named queues (`amq.gen-…`, a desk's exclusive queue for answers).
  Everything else is declared here, so a school's user can create no exchange of its own:
  with one it could read from, an exchange-to-exchange binding into the network's exchange
  would carry routing keys its topic permissions forbid it to publish.
- write: the network's exchange (limited by topic permissions to the keys that name the
  school as origin), its own dead-letter exchange, its own queue and server-named queues
  (to bind them). Not the default exchange: that would let it put messages into any queue.
- read: the network's exchange (to bind; limited by topic permissions), its own queue, its
  own DLQ and server-named queues.

Passwords are random, one file per school in the secrets folder (mode 0600), kept when the
file is there already, and never printed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter import broker
from adapter.config import Settings
from adapter.mapping import routes

HASHING = "rabbit_password_hashing_sha256"
# What the broker names server-named queues; a client can declare no exchange with this prefix.
_SERVER_NAMED = r"amq\.gen-.*"


class ProvisionError(Exception):
    """Provisioning could not be done, with what to do."""


@dataclass(frozen=True, slots=True)
class SchoolUser:
    school: str
    user: str


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's salted SHA-256 (`rabbit_password_hashing_sha256`): base64 of a 4-byte salt
    and SHA-256 of the salt and the UTF-8 password."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def school_users(settings: Settings) -> list[SchoolUser]:
    """Every school of the network with its broker user; refuses what would share a user."""
    problem = settings.broker_user_problem()
    if problem is not None:
        raise ProvisionError(f"{problem}: give every school a broker user of its own")
    own = SchoolUser(settings.school.id, settings.broker_user)
    return [own, *(SchoolUser(peer.id, str(peer.broker_user)) for peer in settings.schools)]


def permissions(network: str, school: str) -> dict[str, str]:
    """configure, write and read: the resource-name patterns of one school's user."""
    spec = broker.topology(network, school, delivery_limit=1)
    exchange, queue, dlq = (
        re.escape(name) for name in (spec.exchange.name, spec.queue.name, spec.dlq.name)
    )
    dead_letters = re.escape(spec.dead_letters.name)
    return {
        "configure": f"^{_SERVER_NAMED}$",
        "write": f"^({exchange}|{dead_letters}|{queue}|{_SERVER_NAMED})$",
        "read": f"^({exchange}|{queue}|{dlq}|{_SERVER_NAMED})$",
    }


def definitions(settings: Settings, passwords: dict[str, str]) -> dict[str, Any]:
    """The definitions of the network of `settings`; `passwords` by school id."""
    network, vhost = settings.broker.network, broker.vhost(settings.broker.url)
    users = school_users(settings)
    topologies = [
        broker.topology(network, user.school, delivery_limit=settings.broker.delivery_limit)
        for user in users
    ]
    exchanges = [topologies[0].exchange, *(spec.dead_letters for spec in topologies)]
    return {
        "users": [
            {
                "name": user.user,
                "password_hash": password_hash(passwords[user.school]),
                "hashing_algorithm": HASHING,
                "tags": [],
            }
            for user in users
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {"user": user.user, "vhost": vhost, **permissions(network, user.school)}
            for user in users
        ],
        "topic_permissions": [
            {
                "user": user.user,
                "vhost": vhost,
                "exchange": network,
                "write": routes.publish_permission(user.school),
                "read": routes.bind_permission(user.school),
            }
            for user in users
        ],
        "exchanges": [
            {
                "name": exchange.name,
                "vhost": vhost,
                "type": exchange.type.value,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for exchange in exchanges
        ],
        "queues": [
            {
                "name": queue.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": queue.arguments,
            }
            for spec in topologies
            for queue in (spec.queue, spec.dlq)
        ],
        "bindings": [
            {
                "source": spec.dead_letters.name,
                "vhost": vhost,
                "destination": queue,
                "destination_type": "queue",
                "routing_key": key,
                "arguments": {},
            }
            for spec in topologies
            for queue, key in spec.dead_letter_bindings()
        ],
    }


def passwords_in(folder: Path, schools: list[str]) -> dict[str, str]:
    """Each school's password from `<folder>/<school>.password`; a missing one is made and
    written with mode 0600."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    found: dict[str, str] = {}
    for school in schools:
        path = folder / f"{school}.password"
        if path.is_file():
            found[school] = path.read_text(encoding="utf-8").strip()
            continue
        found[school] = secrets.token_urlsafe(24)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(found[school] + "\n")
    return found


def apply(path: Path, node: str | None = None) -> None:
    """Load a definitions file into a broker with `rabbitmqctl import_definitions`: the local
    node, or `node` (`rabbitmqctl -n NODE`, e.g. `rabbit@broker`). It goes through standard
    input: the broker's node may not read a file only its owner may."""
    target = ["-n", node] if node is not None else []
    try:
        result = subprocess.run(
            ["rabbitmqctl", *target, "import_definitions", "--format", "json"],
            input=path.read_text(encoding="utf-8"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except FileNotFoundError as error:
        raise ProvisionError(
            "rabbitmqctl is not installed here: import the file where it is"
        ) from error
    if result.returncode != 0:
        raise ProvisionError(
            f"rabbitmqctl import_definitions failed: {result.stderr.strip()[:300]}"
        )


def provision(settings: Settings, out: Path, secrets_dir: Path) -> list[SchoolUser]:
    """Write the network's definitions to `out`, passwords to `secrets_dir`."""
    users = school_users(settings)
    passwords = passwords_in(secrets_dir, [user.school for user in users])
    out.write_text(json.dumps(definitions(settings, passwords), indent=2) + "\n", encoding="utf-8")
    out.chmod(0o600)
    return users
