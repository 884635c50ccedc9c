"""`python -m adapter.store.migrations revision "what changed"` writes the next revision of
the state DB from the difference between `adapter/store/state.py` and the newest revision;
`... check` exits 1 while there is such a difference (see the package's docstring)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from adapter.store import state
from adapter.store.db import make_engine
from adapter.store.migrations import _script, alembic_config, upgrade


def _at_head(folder: str) -> Engine:
    engine = make_engine(f"sqlite:///{Path(folder) / 'state.db'}")
    upgrade(engine)
    return engine


def differences(engine: Engine) -> list[Any]:
    """What state.py has that the DB at `engine` lacks, or the other way round."""
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), state.metadata))


def next_revision_id(revisions: Iterable[str]) -> str:
    numbers = [int(revision) for revision in revisions if revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def revision(message: str) -> Path | None:
    """Write the next revision; None when state.py and the revisions agree."""
    with tempfile.TemporaryDirectory() as folder:
        engine = _at_head(folder)
        written: list[Path] = []

        def skip_empty(_context: Any, _revision: Any, directives: list[MigrationScript]) -> None:
            if directives[0].upgrade_ops is None or directives[0].upgrade_ops.is_empty():
                directives.clear()

        existing = [script.revision for script in _script(()).walk_revisions()]
        with engine.connect() as connection:
            script = command.revision(
                alembic_config(connection),
                message,
                autogenerate=True,
                rev_id=next_revision_id(existing),
                process_revision_directives=skip_empty,
            )
        engine.dispose()
        for one in script if isinstance(script, list) else [script]:
            if one is not None:
                written.append(Path(one.path))
    for path in written:
        _tidy(path)
    return written[0] if written else None


def _tidy(path: Path) -> None:
    """Format the written revision as the rest of the code is (when ruff is installed)."""
    if importlib.util.find_spec("ruff") is None:
        return
    for arguments in (["check", "--fix", "--quiet"], ["format", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *arguments, str(path)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter.store.migrations")
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("revision", help="write the next revision from state.py")
    write.add_argument("message", help="what changed, e.g. 'dead letter notes'")
    commands.add_parser("check", help="exit 1 when state.py has changes without a revision")
    arguments = parser.parse_args(argv)
    if arguments.command == "revision":
        path = revision(arguments.message)
        if path is None:
            sys.stdout.write("state.py and the revisions agree: nothing to write\n")
        else:
            sys.stdout.write(f"wrote {path}: read it before committing\n")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        engine = _at_head(folder)
        found = differences(engine)
        engine.dispose()
    for difference in found:
        sys.stdout.write(f"{difference}\n")
    if found:
        sys.stdout.write("state.py has changes without a revision: write one with `revision`\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
