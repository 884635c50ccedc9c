"""Settings of one school's adapter: a TOML file, overridden by `VHS_SYNC_*` variables.

`VHS_SYNC_BROKER__URL=amqp://...` overrides `[broker] url`, and so on for every field.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from adapter.broker import broker_user
from adapter.messages import MAX_MESSAGE_BYTES
from adapter.store.admin import SchemaMapping

SchoolId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class ConfigError(Exception):
    """A configuration that cannot run, with a message an operator can act on."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchoolSection(_Section):
    id: SchoolId = Field(description="this school's id in the network, e.g. `vhs-sr`")
    name: str = Field(min_length=1, description="the name other schools show, e.g. `VHS SR`")


class PeerSchool(_Section):
    id: SchoolId
    name: str = Field(min_length=1)
    broker_user: str | None = Field(
        default=None, description="the broker user this school publishes as (DESIGN decision 8)"
    )
    email: str | None = None


class DatabaseSection(_Section):
    url: str = Field(min_length=1)


class AdminDatabaseSection(DatabaseSection):
    """The school's admin DB, and the names of its tables and columns where they are not the
    reference schema's (docs/admin-db.md): `[admin_db.tables]` by table, `[admin_db.columns.
    <table>]` by column; a column named "" is absent, and the adapter keeps it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    db_schema: str | None = Field(
        default=None, alias="schema", description="the tables' schema, e.g. `dbo`"
    )
    tables: dict[str, str] = Field(default_factory=dict)
    columns: dict[str, dict[str, str]] = Field(default_factory=dict)
    timezone: str | None = Field(
        default=None,
        description="the zone of the admin DB's wall-clock stamps (BEARBDATUM), an IANA name "
        "such as `Europe/Berlin`; unset: this machine's zone",
    )

    @model_validator(mode="after")
    def _mapping_is_usable(self) -> AdminDatabaseSection:
        problems = self.mapping().problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def mapping(self) -> SchemaMapping:
        return SchemaMapping(tables=self.tables, columns=self.columns, schema=self.db_schema)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}: give an IANA name such as 'Europe/Berlin'"
                ) from None
        return value

    @property
    def zone(self) -> ZoneInfo | None:
        """The admin DB's zone, or None for this machine's."""
        return ZoneInfo(self.timezone) if self.timezone is not None else None


class BrokerSection(_Section):
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    network: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")] = (
        "vhskoob"
    )
    insecure: bool = Field(
        default=False,
        description="run without per-school broker users: origins are not authenticated",
    )
    prefetch: int = Field(default=256, ge=1, le=65535)
    delivery_limit: int = Field(default=20, ge=1)
    batch_size: int = Field(default=200, ge=1)
    events_per_message: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="enrollment events one message may carry when many are due at once",
    )
    max_message_bytes: int = Field(
        default=MAX_MESSAGE_BYTES,
        ge=64 * 1024,
        description="the largest message body the receiver reads; larger ones are dead-lettered",
    )


class CaptureSection(_Section):
    poll_interval: float = Field(default=0.2, gt=0, description="seconds between polls")
    full_scan_interval: float = Field(default=60.0, gt=0, description="seconds between scans")
    overlap: float = Field(
        default=2.0, ge=0, description="seconds of modification stamps read again each poll"
    )
    join_interval: float = Field(
        default=0.5,
        gt=0,
        description="seconds between looks for courses this school newly shares (V1)",
    )


class ReconcileSection(_Section):
    """The daemon's own reconciliation (`vhs-sync reconcile` on a schedule)."""

    interval: float = Field(
        default=900.0, ge=0, description="seconds between reconciliations; 0: never"
    )
    repair: bool = Field(
        default=False, description="ask the members to send a drifted course again"
    )
    wait: float = Field(default=3.0, gt=0, description="seconds to wait for the members' answers")


class MetricsSection(_Section):
    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"


class HealthSection(_Section):
    """What `vhs-sync status` and `/readyz` hold the daemon to."""

    max_poll_age: float = Field(
        default=60.0,
        gt=0,
        description="seconds since the last successful poll after which the daemon is unhealthy",
    )
    heartbeat_timeout: float = Field(
        default=15.0,
        gt=0,
        description="seconds without a heartbeat after which a daemon counts as not running; "
        "then another daemon may take the school",
    )
    interval: float = Field(
        default=1.0,
        gt=0,
        description="seconds between heartbeats, database pings and queue samples",
    )

    @model_validator(mode="after")
    def _beats_within_timeout(self) -> HealthSection:
        if self.interval * 3 > self.heartbeat_timeout:
            raise ValueError("interval: at most a third of heartbeat_timeout")
        return self


class SmtpSection(_Section):
    """The mail server the registration desk sends its messages through (D3)."""

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(min_length=3, description="the From address, e.g. `kurse@vhs-sr.de`")
    starttls: bool = False
    username: str | None = None
    password: str | None = None


class OffersSection(_Section):
    """Subscribing to other schools' course offers (`vhs-sync subscribe`)."""

    create_courses: bool = Field(
        default=True,
        description="create the subscribed course in the admin DB; false: print its fields "
        "for staff to create in the admin product (where the vendor DB must not be written)",
    )


class Settings(BaseSettings):
    """Everything one school's adapter needs to know."""

    model_config = SettingsConfigDict(
        env_prefix="VHS_SYNC_", env_nested_delimiter="__", extra="forbid"
    )
    toml_path: ClassVar[Path | None] = None

    school: SchoolSection
    admin_db: AdminDatabaseSection
    state_db: DatabaseSection
    broker: BrokerSection = BrokerSection()
    capture: CaptureSection = CaptureSection()
    metrics: MetricsSection = MetricsSection()
    reconcile: ReconcileSection = ReconcileSection()
    health: HealthSection = HealthSection()
    smtp: SmtpSection | None = None
    offers: OffersSection = OffersSection()
    schools: list[PeerSchool] = Field(
        default_factory=list, description="the other schools of the network"
    )

    @model_validator(mode="after")
    def _schools_are_unique(self) -> Settings:
        ids = [peer.id for peer in self.schools]
        if self.school.id in ids:
            raise ValueError(f"schools: {self.school.id!r} is this school, not a peer")
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"schools: listed more than once: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _state_db_is_its_own(self) -> Settings:
        # Apply commits the state DB while its admin-DB transaction is open: one database for
        # both would wait for itself.
        if _same_database(self.admin_db.url, self.state_db.url):
            raise ValueError("state_db: url must name a database of its own, not the admin DB")
        return self

    @field_validator("admin_db", mode="before")
    @classmethod
    def _admin_db_section(cls, value: Any) -> Any:
        # A plain `DatabaseSection` names an admin DB in this machine's zone.
        if isinstance(value, DatabaseSection) and not isinstance(value, AdminDatabaseSection):
            return value.model_dump()
        return value

    @model_validator(mode="after")
    def _state_db_is_not_sql_server(self) -> Settings:
        # The state DB's statements use row values (`(a, b) IN ((1, 2), ...)`), which SQL
        # Server lacks; SQL Server is supported for the admin DB (KuferSQL).
        if _backend(self.state_db.url) == "mssql":
            raise ValueError(
                "state_db: SQL Server is supported for the admin DB only; keep the state DB "
                "in SQLite (a file next to the adapter) or PostgreSQL"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    def peer(self, school_id: str) -> PeerSchool | None:
        return next((peer for peer in self.schools if peer.id == school_id), None)

    @property
    def broker_user(self) -> str:
        """The broker user this school connects and publishes as."""
        return broker_user(self.broker.url)

    def check_broker_users(self) -> None:
        """Each school has a broker user of its own, or `[broker] insecure` says otherwise
        (DESIGN decision 8). Raises `ConfigError` with the first problem in one line."""
        problem = None if self.broker.insecure else self.broker_user_problem()
        if problem is not None:
            raise ConfigError(
                f"{problem} (provision per-school users with `vhs-sync broker provision`, "
                "or set [broker] insecure = true to run without checking origins)"
            )

    def broker_user_problem(self) -> str | None:
        """Why the schools' broker users do not authenticate each school, or None."""
        missing = [peer.id for peer in self.schools if not peer.broker_user]
        if missing:
            return f"schools without broker_user: {', '.join(missing)}"
        own = self.broker_user
        if own == "guest":
            return "this school connects to the broker as guest"
        users = [own, *(str(peer.broker_user) for peer in self.schools)]
        shared = sorted({user for user in users if users.count(user) > 1})
        if shared:
            return f"broker users shared by two schools: {', '.join(shared)}"
        return None


def _backend(url: str) -> str | None:
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:
        return None  # `make_engine` says what is wrong with it


def _same_database(first: str, second: str) -> bool:
    """Whether two URLs name one database (each in-memory SQLite database is its own)."""
    in_memory = second in ("sqlite://", "sqlite:///:memory:") or ":memory:" in second
    return first == second and not in_memory


def _relative_to(url: str, base: Path) -> str:
    """A relative SQLite path in a config file means: next to the config file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url.removeprefix(prefix)).resolve())
    return url


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_settings(path: Path, **overrides: Any) -> Settings:
    """Read a school's TOML file; every problem becomes one readable `ConfigError`."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error

    class _FromFile(Settings):
        toml_path: ClassVar[Path | None] = path

    try:
        settings: Settings = _FromFile(**overrides)
    except ValidationError as error:
        raise ConfigError(f"config file {path} is not usable:\n{_describe(error)}") from error
    base = path.parent
    settings.admin_db.url = _relative_to(settings.admin_db.url, base)
    settings.state_db.url = _relative_to(settings.state_db.url, base)
    if _same_database(settings.admin_db.url, settings.state_db.url):
        raise ConfigError(
            f"config file {path} is not usable:\n  state_db.url: names the admin DB; the "
            "state DB must be a database of its own"
        )
    return settings
