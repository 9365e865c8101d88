"""The daemon file (`quotad.toml`): broker, database, state directory, notices, simulated clock.

Loaded with pydantic-settings: the TOML file's values, overridden by environment variables
`QUOTAD_<SECTION>__<KEY>` (`QUOTAD_MQTT__PORT=1884`, `QUOTAD_STATE_DIR=/tmp/q`). Secrets are never in the
file: it names the files that hold them, and `Secrets` reads them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from quotad.config.channels import Channel
from quotad.core.i18n import _
from quotad.core.topics import MAX_PREFIX_BYTES, topic_problem

__all__ = ["ClockSettings", "DaemonSettings", "InfluxSettings", "MqttSettings", "NoticeSettings", "read_secret"]

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("quotad_environ", default=None)


class _GivenEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping the loader was handed."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRON.get()
        if given is None:
            return super()._load_env_vars()
        return {k.lower(): v for k, v in given.items() if v != ""}


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="quotad", min_length=1, max_length=128)
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    topic_prefix: str = Field(default="quotad", min_length=1)
    keepalive_s: int = Field(default=60, ge=5, le=3600)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        problem = topic_problem(value, MAX_PREFIX_BYTES)
        if problem is not None:
            raise ValueError(problem)
        if value.startswith("/") or value.endswith("/"):
            msg = _("topic_prefix must be a topic without wildcards and without a leading or trailing '/'")
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttSettings:
        if self.password_file is not None and self.username is None:
            msg = _("password_file is set but username is not")
            raise ValueError(msg)
        return self


class InfluxSettings(_Section):
    """`[influx]`. Credentials: v1 (InfluxDB 1.x) `username` + `password_file`, sent as HTTP Basic auth, which every
    1.x takes; or `token_file`, sent as `Authorization: Token <file's line>`, which InfluxDB 1.8+ takes as
    `user:password` and 2.x's v1-compatible /write as an API token (1.6, Debian 12's, answers 401 to it). v2:
    `token_file`. The outbox bound: past `outbox_max_mb`, or for points waiting longer than `outbox_max_age_h`,
    the oldest telemetry points give way (meter_reading, firm_energy, township_energy; every reading stays in the
    journal); alerts and orders never do."""

    api: Literal["v1", "v2"] = "v1"
    url: str = "http://127.0.0.1:8086"
    bucket: str = Field(default="quotad", min_length=1)
    org: str | None = None
    token_file: Path | None = None
    username: str | None = Field(default=None, min_length=1)
    password_file: Path | None = None
    outbox_max_mb: float = Field(default=512.0, gt=0)
    outbox_max_age_h: float = Field(default=72.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            msg = _("expected an http:// or https:// URL, got {value!r}").format(value=value)
            raise ValueError(msg)
        return value.rstrip("/")

    @model_validator(mode="after")
    def _v2_needs_org(self) -> InfluxSettings:
        if self.api == "v2" and not self.org:
            msg = _("api = 'v2' needs org")
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _credentials(self) -> InfluxSettings:
        if (self.username is None) != (self.password_file is None):
            msg = _("username and password_file go together (InfluxDB 1.x's user and the file holding its password)")
            raise ValueError(msg)
        if self.username is not None and self.api == "v2":
            msg = _("username and password_file are for api = 'v1' (InfluxDB 1.x); api = 'v2' takes token_file")
            raise ValueError(msg)
        if self.username is not None and self.token_file is not None:
            msg = _("give either username and password_file or token_file, not both")
            raise ValueError(msg)
        return self


class NoticeSettings(_Section):
    tomorrow_at: str = "18:00"

    @field_validator("tomorrow_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            msg = _("expected a local time 'HH:MM', got {value!r}").format(value=value)
            raise ValueError(msg)
        return value


class WebSettings(_Section):
    """`[web]`: the console (SPEC "The console"). `listen` is `host:port` (loopback by default: put nginx with TLS in
    front, `deploy/nginx/`); `users_file` holds one user a line (`quotad user add`); `secure_cookie` marks the
    session cookie Secure, for a console reached over https (behind TLS); `session_hours`: a session idle that
    long ends."""

    listen: str = "127.0.0.1:8080"
    users_file: Path
    secure_cookie: bool = False
    session_hours: float = Field(default=12.0, gt=0, le=24 * 31)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            msg = _("listen is host:port, e.g. 127.0.0.1:8080")
            raise ValueError(msg)
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _sep, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class ClockSettings(_Section):
    start: dt.datetime
    speed: float = Field(default=1.0, gt=0, le=100_000)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            msg = _("clock.start needs a UTC offset, e.g. 2010-10-19T00:00:00+08:00")
            raise ValueError(msg)
        return value


class DaemonSettings(BaseSettings):
    """The daemon file. Relative paths are resolved against the file's directory by the loader."""

    model_config = SettingsConfigDict(
        env_prefix="QUOTAD_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    policy: Path
    state_dir: Path = Path("/var/lib/quotad")
    mqtt: MqttSettings | None = None
    influx: InfluxSettings | None = None
    notices: NoticeSettings = NoticeSettings()
    clock: ClockSettings | None = None
    web: WebSettings | None = None
    channels: tuple[Channel, ...] = ()  # SPEC "Notices and channels": where notices go

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values come in as init kwargs; the environment overrides them.
        return (_GivenEnvSource(settings_cls), init_settings)

    @classmethod
    def from_file_values(cls, values: Mapping[str, Any], environ: Mapping[str, str]) -> DaemonSettings:
        """The settings from a parsed daemon file, overridden by `environ`'s QUOTAD_* variables."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**values)
        finally:
            _ENVIRON.reset(token)


def read_secret(path: Path) -> SecretStr:
    """The secret held in `path` (first line, surrounding whitespace stripped)."""
    text = path.read_text(encoding="utf-8")
    return SecretStr(text.strip().splitlines()[0] if text.strip() else "")
