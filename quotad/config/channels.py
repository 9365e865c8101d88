"""`[[channels]]` of the daemon file: where notices go (SPEC "Notices and channels").

A channel's kind picks its model (a discriminated union on `kind`, as the meters' sources are). Its secrets are
never in the file: `url_file` holds the robot's or the webhook's URL (the URL carries the robot's key),
`secret_file` the signing secret, `password_file` the SMTP password. `channel_findings` checks what a model cannot
see (the files are readable, the URL in them is http(s), names are unique); `reference_findings` checks the policy's
references to channels (a firm's contacts, `[reports] to`, `[residents] channels`, `[enforcement] supply_station`)
against the names. Both run in the one loader.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from quotad.core.i18n import _

__all__ = [
    "Channel",
    "DingtalkChannel",
    "EmailChannel",
    "WebhookChannel",
    "WecomChannel",
    "channel_findings",
    "channel_secret_files",
    "reference_findings",
    "resolved_channel",
]

Loc = tuple[str | int, ...]
Finding = tuple[Loc, str]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=_NAME)


class WecomChannel(_Channel):
    """企业微信群机器人: the group robot's webhook URL (`.../cgi-bin/webhook/send?key=...`) in `url_file`."""

    kind: Literal["wecom"]
    url_file: Path
    per_minute: int = Field(default=20, ge=1, le=1000)  # the robot takes 20 messages a minute


class DingtalkChannel(_Channel):
    """钉钉自定义机器人 with 加签: the webhook URL (`.../robot/send?access_token=...`) and the signing secret."""

    kind: Literal["dingtalk"]
    url_file: Path
    secret_file: Path
    per_minute: int = Field(default=20, ge=1, le=1000)  # the robot takes 20 messages a minute


class WebhookChannel(_Channel):
    """A JSON POST to any URL (an SMS gateway, the county's system), HMAC-signed when `secret_file` is given."""

    kind: Literal["webhook"]
    url_file: Path
    secret_file: Path | None = None
    per_minute: int = Field(default=60, ge=1, le=6000)


class EmailChannel(_Channel):
    """SMTP: STARTTLS unless `starttls = false` (a relay on the machine itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = Field(default=None, min_length=1)
    password_file: Path | None = None
    sender: str = Field(alias="from", min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    to: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")], ...] = Field(min_length=1)
    starttls: bool = True
    ca_file: Path | None = None  # the CA that signed the relay's certificate, when not the system's (a township CA)
    per_minute: int = Field(default=30, ge=1, le=1000)


Channel = Annotated[WecomChannel | DingtalkChannel | WebhookChannel | EmailChannel, Field(discriminator="kind")]

_ADAPTER: TypeAdapter[Channel] = TypeAdapter(Channel)


def resolved_channel(channel: Channel, base: Path) -> Channel:
    """`channel` with its files relative to `base` (the daemon file's folder) made absolute."""

    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    keys = [k for k in ("url_file", "secret_file", "password_file", "ca_file") if k in type(channel).model_fields]
    return channel.model_copy(update={key: fix(getattr(channel, key)) for key in keys})


def channel_secret_files(channels: Sequence[Channel] | Mapping[int, Channel]) -> list[tuple[Loc, Path]]:
    """Every secret file the channels (by their index in the file) name, with where it is named."""
    found: list[tuple[Loc, Path]] = []
    for i, channel in channels.items() if isinstance(channels, Mapping) else enumerate(channels):
        for key in ("url_file", "secret_file", "password_file", "ca_file"):
            file = getattr(channel, key, None)
            if isinstance(file, Path):
                found.append((("channels", i, key), file))
    return found


def channel_findings(raw: Any, base: Path) -> tuple[list[Finding], set[str]]:
    """What the daemon file's `channels` (as parsed, `raw`) hold that a model cannot see: duplicate names,
    unreadable secret files (relative to `base`), a URL file that holds no http(s) URL, a password without a user;
    and every name written. Each channel is validated on its own (its own faults are the loader's to report), so
    that one broken channel does not hide another's unreadable file, nor the policy's references to it."""
    items = raw if isinstance(raw, list) else []
    names = {item["name"] for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)}
    found: list[Finding] = []
    seen: dict[str, int] = {}
    valid: dict[int, Channel] = {}
    for i, item in enumerate(items):
        try:
            channel = resolved_channel(_ADAPTER.validate_python(item), base)
        except ValidationError:
            continue
        valid[i] = channel
        if channel.name in seen:
            message = _("duplicate channel name {name!r} (also channels[{other}])")
            found.append((("channels", i, "name"), message.format(name=channel.name, other=seen[channel.name])))
        seen.setdefault(channel.name, i)
        if isinstance(channel, EmailChannel) and channel.password_file is not None and channel.username is None:
            found.append((("channels", i, "password_file"), _("password_file is set but username is not")))
    for loc, file in channel_secret_files(valid):
        if not (file.is_file() and os.access(file, os.R_OK)):
            found.append((loc, _("cannot read {file} (not a readable file)").format(file=file)))
        elif loc[-1] == "url_file":
            found += [(loc, problem) for problem in _url_problems(file)]
        elif not file.read_text(encoding="utf-8", errors="replace").strip():
            found.append((loc, _("{file} is empty").format(file=file)))
    return found, names


def _url_problems(file: Path) -> list[str]:
    text = file.read_text(encoding="utf-8", errors="replace").strip()
    url = text.splitlines()[0].strip() if text else ""
    if not re.match(r"^https?://[^/\s?#]+", url):
        return [_("the first line is not an http:// or https:// URL (in {file})").format(file=file)]
    return []


def reference_findings(raw: Mapping[str, Any], names: set[str]) -> list[Finding]:
    """Each channel a firm's contact, `[reports] to`, `[residents] channels` or `[enforcement] supply_station` names
    exists among `names` (the daemon file's channels); read from the policy document as written, so that a firm
    failing on another key still has its contacts checked."""
    known = ", ".join(sorted(names)) or _("none")
    message = _("unknown channel {name!r} (the daemon file's channels: {known})")
    found: list[Finding] = []
    firms = raw.get("firms")
    for i, firm in enumerate(firms if isinstance(firms, list) else []):
        contacts = firm.get("contacts") if isinstance(firm, dict) else None
        for j, contact in enumerate(contacts if isinstance(contacts, list) else []):
            name = contact.get("channel") if isinstance(contact, dict) else None
            if isinstance(name, str) and name not in names:
                found.append((("firms", i, "contacts", j, "channel"), message.format(name=name, known=known)))
    for table, key in (("reports", "to"), ("residents", "channels")):
        section = raw.get(table)
        targets = section.get(key) if isinstance(section, dict) else None
        for k, name in enumerate(targets if isinstance(targets, list) else []):
            if isinstance(name, str) and name not in names:
                found.append(((table, key, k), message.format(name=name, known=known)))
    enforcement = raw.get("enforcement")
    station = enforcement.get("supply_station") if isinstance(enforcement, dict) else None
    if isinstance(station, str) and station not in names:
        found.append((("enforcement", "supply_station"), message.format(name=station, known=known)))
    return found
