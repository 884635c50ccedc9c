"""A RabbitMQ node of its own, for the tests and benchmarks that make a broker die.

The node runs `rabbitmq-server` under a node name, AMQP and distribution ports, data, log and
config files, plugin list and Erlang cookie (in a HOME of its own) that are all its own, so
that stopping, restarting or killing it never touches the machine's broker (`rabbit@...`,
port 5672, its data and its cookie). It listens on 127.0.0.1 only and has no plugins, so no
plugin port collides with anyone's. It is stopped, and its files removed, when it is closed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

STARTUP_TIMEOUT = 90.0


class BrokerNodeError(RuntimeError):
    """The node did not do what it was asked to, with the tail of its log."""


def scripts_dir() -> Path | None:
    """Where the real `rabbitmq-server` and `rabbitmqctl` scripts are: beside the one on PATH
    (Debian's is a symlink to a wrapper that switches to the machine's broker user), or
    None when RabbitMQ is not installed."""
    found = shutil.which("rabbitmq-server") or next(
        (
            str(path)
            for path in (Path("/usr/sbin/rabbitmq-server"), Path("/usr/local/sbin/rabbitmq-server"))
            if path.exists()
        ),
        None,
    )
    if found is None:
        return None
    folder = Path(found).resolve().parent
    if (folder / "rabbitmq-server").exists() and (folder / "rabbitmqctl").exists():
        return folder
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class BrokerNode:
    """One RabbitMQ node in a folder of its own. `start()` boots it (again on the same data
    after `kill()`), `stop_app()`/`start_app()` stop and start the broker inside it, and
    `close()` (or leaving the `with` block) stops it and removes its folder."""

    def __init__(self, *, prefix: str = "vhs-test", folder: Path | None = None) -> None:
        found = scripts_dir()
        if found is None:
            raise BrokerNodeError("rabbitmq-server is not installed")
        self.scripts = found
        self.folder = folder or Path(tempfile.mkdtemp(prefix=f"{prefix}-node-"))
        self.name = f"{prefix}-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_files()
        atexit.register(self._kill_quietly)

    def _write_files(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        cookie = self.folder / "home" / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(
                "".join(secrets.choice(string.ascii_uppercase) for _ in range(32)),
                encoding="ascii",
            )
            cookie.chmod(0o400)
        (self.folder / "enabled_plugins").write_text("[].\n", encoding="ascii")
        (self.folder / "rabbitmq-env.conf").write_text("", encoding="ascii")
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            # queue_depths() counts from statistics: every second rather than every five
            "collect_statistics_interval = 1000\n",
            encoding="ascii",
        )

    def _environment(self) -> dict[str, str]:
        """This node's settings only: nothing of the machine's broker is inherited."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_"))
        }
        folder = self.folder
        return {
            **inherited,
            "HOME": str(folder / "home"),  # the cookie of this node, not the machine's
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(folder / "node.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def running(self) -> bool:
        """Whether the node's OS process is alive (its broker may be stopped)."""
        return self._process is not None and self._process.poll() is None

    def accepts_connections(self) -> bool:
        return self.running and _port_open(self.port)

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Boot the node on its data folder and wait until it accepts AMQP connections."""
        if self.running:
            return
        deadline = time.monotonic() + timeout
        while True:
            with (self.folder / "log" / "stdout.log").open("ab") as out:
                self._process = subprocess.Popen(
                    [str(self.scripts / "rabbitmq-server")],
                    env=self._environment(),
                    cwd=self.folder,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # one process group: kill() takes all of it
                )
            if self._wait_for_amqp(deadline):
                return
            if self.running or time.monotonic() > deadline:
                self.kill()
                raise BrokerNodeError(f"node {self.name} did not start: {self.log_tail()}")
            time.sleep(1)  # it exited at once (its name still registered): boot it again

    def _wait_for_amqp(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if _port_open(self.port):
                return True
            time.sleep(0.2)
        return False

    def ctl(self, *args: str, stdin: str | None = None, timeout: float = 120.0) -> str:
        """`rabbitmqctl -n NODE ARGS` against this node (`stdin` on its standard input, e.g.
        definitions for `import_definitions`); its output."""
        result = subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-n", self.name, *args],
            input=stdin,
            env=self._environment(),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerNodeError(
                f"rabbitmqctl {' '.join(args)} on {self.name}: {result.stderr.strip()[-500:]}"
            )
        return result.stdout

    def queue_depths(self) -> dict[str, int]:
        """Every queue of the node and its messages, ready and unacknowledged, as its
        statistics had them up to a second ago."""
        out = self.ctl("list_queues", "name", "messages", "--quiet", "--no-table-headers")
        depths: dict[str, int] = {}
        for line in out.splitlines():
            name, _, count = line.rpartition("\t")
            if name and count.strip().isdigit():
                depths[name] = int(count)
        return depths

    def stop_app(self) -> None:
        """Stop the broker inside the node: every connection is closed, nothing accepted."""
        self.ctl("stop_app")

    def start_app(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the broker again and wait until it accepts AMQP connections."""
        self.ctl("start_app")
        if not self._wait_for_amqp(time.monotonic() + timeout):
            raise BrokerNodeError(f"node {self.name} does not accept AMQP: {self.log_tail()}")

    def restart_app(self) -> None:
        self.stop_app()
        self.start_app()

    def kill(self) -> None:
        """kill -9 the node (the whole process group) and wait until it is gone."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        self._process = None
        deadline = time.monotonic() + 30  # the VM itself may outlive its script a moment
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the node as an operator would; kill it when it does not stop in time."""
        if not self.running:
            self._process = None
            return
        with contextlib.suppress(BrokerNodeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=60)
        process = self._process
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
        self.kill()

    def close(self) -> None:
        """Stop the node and remove its folder."""
        try:
            self.stop()
        finally:
            atexit.unregister(self._kill_quietly)
            shutil.rmtree(self.folder, ignore_errors=True)

    def _kill_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()

    def log_tail(self, lines: int = 20) -> str:
        path = self.folder / "log" / "stdout.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> BrokerNode:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
