"""Load the daemon file and the policy file, reporting every problem as `file:line: field.path: message`.

Lines come from `PositionIndex` (a small tested scanner: tomllib gives no positions). Values overridden by
the environment are reported against the variable (`$QUOTAD_MQTT__PORT: mqtt.port: ...`). Warnings (a value that
looks like a slip, a secret others can read) come in the same form; `strict` makes them problems.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from quotad.config.channels import channel_findings, channel_secret_files, reference_findings, resolved_channel
from quotad.config.crosscheck import DEFAULT_PREFIX, cross_check
from quotad.config.daemon import DaemonSettings
from quotad.config.figures import slips
from quotad.config.foreign import os_error, pydantic_message, toml_message
from quotad.config.tomlpos import PositionIndex
from quotad.config.users import read_users
from quotad.core.errors import ConfigError, Problem
from quotad.core.i18n import _
from quotad.core.policy import Policy
from quotad.core.sources import file_loc

__all__ = ["Loaded", "format_path", "load", "load_policy"]

Loc = tuple[str | int, ...]
_POLICY_TABLES = ("township", "control", "rota", "residents", "enforcement")


@dataclass(frozen=True)
class Loaded:
    """A valid configuration: the policy, and the daemon settings when a daemon file was given."""

    policy: Policy
    policy_path: Path
    daemon: DaemonSettings | None = None
    daemon_path: Path | None = None
    warnings: tuple[Problem, ...] = ()  # not errors, but an operator should know: a slip, a secret others can read


@dataclass
class _Doc:
    path: Path
    raw: dict[str, Any]
    index: PositionIndex
    env_keys: dict[Loc, str]

    def problem(self, loc: Loc, message: str, *, warning: bool = False) -> Problem:
        loc = _real_loc(self.raw, file_loc(loc))
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.env_keys:
                return Problem(f"${self.env_keys[loc[:n]]}", 0, format_path(loc), message, warning)
        # a missing key is on its table's line: asking for the table spares a scan of the rest of the file
        known = loc if _child_at(self.raw, loc) is not _ABSENT else loc[:-1]
        return Problem(str(self.path), self.index.line_of(known), format_path(loc), message, warning)


def format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def load(path: Path, environ: Mapping[str, str] | None = None, *, strict: bool = False) -> Loaded:
    """Load `path`: a daemon file (which names its policy) or a policy file on its own. Its warnings come with
    it; `strict`: they are problems, raised with the errors (`check-config --strict`)."""
    env = dict(os.environ if environ is None else environ)
    raw, index = _read(path)
    if "township" in raw:
        policy, warnings = _load_policy(path, env, (raw, index), strict)
        return Loaded(policy, path, warnings=warnings)
    return _load_daemon(path, raw, index, env, strict)


def load_policy(
    path: Path, environ: Mapping[str, str] | None = None, parsed: tuple[dict[str, Any], PositionIndex] | None = None
) -> Policy:
    return _load_policy(path, dict(os.environ if environ is None else environ), parsed, strict=False)[0]


def _load_policy(
    path: Path,
    env: dict[str, str],
    parsed: tuple[dict[str, Any], PositionIndex] | None,
    strict: bool,
    daemon: DaemonSettings | None = None,
    channels: set[str] | None = None,
) -> tuple[Policy, tuple[Problem, ...]]:
    """The policy, checked as the daemon `daemon` (when given) will read it: its MQTT meters under its prefix;
    the channels it names among `channels` (the daemon file's, when there is one)."""
    raw, index = parsed or _read(path)
    raw, env_keys = _with_env(raw, env, _POLICY_TABLES)
    doc = _Doc(path, raw, index, env_keys)
    problems: list[Problem] = []
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems += [doc.problem(err["loc"], _message(err)) for err in exc.errors()]
    prefix = daemon.mqtt.topic_prefix if daemon is not None and daemon.mqtt is not None else DEFAULT_PREFIX
    problems += [doc.problem(loc, message) for loc, message in cross_check(raw, policy, prefix)]
    problems += [doc.problem(loc, message) for loc, message in _template_findings(raw, policy)]
    if channels is not None:  # a policy on its own: which channels exist is the daemon file's to say
        problems += [doc.problem(loc, message) for loc, message in reference_findings(raw, channels)]
    warnings: tuple[Problem, ...] = ()
    if strict or not problems:  # a broken file's slips wait until it loads, unless they count as problems
        found = slips(raw, policy) + _unread_meters(policy, daemon)
        warnings = tuple(doc.problem(loc, message, warning=True) for loc, message in found)
    if problems or policy is None or (strict and warnings):
        raise ConfigError(_dedupe(problems) + list(warnings))
    return policy, warnings


def _template_findings(raw: dict[str, Any], policy: Policy | None) -> list[tuple[Loc, str]]:
    """Each Modbus meter names a device template that exists (the templates are files of the package), and the
    registers it reads are ones a meter can have: the same `fields_for` the poller and the simulator build them with,
    so that a spec `quotad run` cannot read (an f32 at register 65535) is refused here, on its line, and not there."""
    from quotad.meters.templates import TemplateError, fields_for, template_names

    known = template_names()
    meters = raw.get("meters")
    found: list[tuple[Loc, str]] = []
    for i, meter in enumerate(meters if isinstance(meters, list) else []):
        modbus = meter.get("modbus") if isinstance(meter, dict) else None
        name = modbus.get("template") if isinstance(modbus, dict) else None
        if isinstance(name, str) and name not in known:
            message = _("unknown template {name!r} (known: {known})").format(name=name, known=", ".join(known))
            found.append((("meters", i, "modbus", "template"), message))
    for i, parsed in enumerate(policy.meters if policy is not None else ()):
        source = parsed.modbus
        if source is None or (source.template is not None and source.template not in known):
            continue
        try:
            fields_for(source)
        except TemplateError as exc:
            found.append((("meters", i, "modbus", "register" if source.template is None else "template"), str(exc)))
    return found


def _unread_meters(policy: Policy | None, daemon: DaemonSettings | None) -> list[tuple[Loc, str]]:
    """MQTT meters, and a daemon file without `[mqtt]`: the daemon will not read them."""
    if policy is None or daemon is None or daemon.mqtt is not None:
        return []
    read = [i for i, meter in enumerate(policy.meters) if meter.mqtt is not None]
    if not read:
        return []
    message = _("{count} MQTT meter(s) but the daemon file has no [mqtt] section: they are not read")
    return [(("meters", read[0], "mqtt"), message.format(count=len(read)))]


def _load_daemon(path: Path, raw: dict[str, Any], index: PositionIndex, env: dict[str, str], strict: bool) -> Loaded:
    doc = _Doc(path, raw, index, _env_keys(env, exclude=_POLICY_TABLES))
    problems: list[Problem] = []
    settings: DaemonSettings | None = None
    found, channels = channel_findings(raw.get("channels"), path.parent)
    problems += [doc.problem(loc, message) for loc, message in found]
    try:
        settings = DaemonSettings.from_file_values(raw, env)
    except ValidationError as exc:
        problems += [doc.problem(_err_loc(err), _message(err)) for err in exc.errors()]
    if settings is None:
        policy_ref = raw.get("policy")
        if isinstance(policy_ref, str) and (path.parent / policy_ref).is_file():
            problems += _policy_problems(path.parent / policy_ref, env, strict, channels)
        raise ConfigError(_dedupe(problems))
    settings = _resolved(settings, path.parent)
    problems += _secret_problems(doc, settings)
    if settings.web is not None:
        try:
            read_users(settings.web.users_file)
        except ConfigError as exc:
            problems += [
                doc.problem(("web", "users_file"), p.message) if not p.line else p for p in exc.problems
            ]  # the file as a whole at the daemon file's line; a line of the users file at its own
    warnings = _secret_warnings(doc, settings)
    if strict:
        problems += warnings
    if not settings.policy.is_file() or not os.access(settings.policy, os.R_OK):
        message = _("cannot read the policy file {path}").format(path=settings.policy)
        problems.append(doc.problem(("policy",), message))
        raise ConfigError(_dedupe(problems))
    policy: Policy | None = None
    try:  # once: a 10,000-meter policy takes a quarter of a second
        policy, policy_warnings = _load_policy(settings.policy, env, None, strict, settings, channels)
    except ConfigError as exc:
        problems += exc.problems
    if problems or policy is None:
        raise ConfigError(_dedupe(problems))
    return Loaded(policy, settings.policy, settings, path, warnings + policy_warnings)


def _policy_problems(path: Path, env: dict[str, str], strict: bool, channels: set[str]) -> list[Problem]:
    try:
        _load_policy(path, env, None, strict, channels=channels)
    except ConfigError as exc:
        return exc.problems
    return []


def _resolved(settings: DaemonSettings, base: Path) -> DaemonSettings:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    update: dict[str, Any] = {"policy": fix(settings.policy), "state_dir": fix(settings.state_dir)}
    if settings.mqtt:
        update["mqtt"] = settings.mqtt.model_copy(
            update={"password_file": fix(settings.mqtt.password_file), "ca_file": fix(settings.mqtt.ca_file)}
        )
    if settings.influx:
        influx = settings.influx
        update["influx"] = influx.model_copy(
            update={"token_file": fix(influx.token_file), "password_file": fix(influx.password_file)}
        )
    if settings.web:
        update["web"] = settings.web.model_copy(update={"users_file": fix(settings.web.users_file)})
    update["channels"] = tuple(resolved_channel(channel, base) for channel in settings.channels)
    return settings.model_copy(update=update)


def _secret_files(settings: DaemonSettings) -> list[tuple[Loc, Path]]:
    files: list[tuple[Loc, Path | None]] = []
    if settings.mqtt:
        files.append((("mqtt", "password_file"), settings.mqtt.password_file))
    if settings.influx:
        files.append((("influx", "token_file"), settings.influx.token_file))
        files.append((("influx", "password_file"), settings.influx.password_file))
    return [(loc, file) for loc, file in files if file is not None] + channel_secret_files(settings.channels)


def _secret_warnings(doc: _Doc, settings: DaemonSettings) -> tuple[Problem, ...]:
    """A secret file that others can read (mode & 0o004) is worth a warning: the secret is not secret."""
    return tuple(
        doc.problem(loc, _("{file} is readable by every user (chmod 600 it)").format(file=file), warning=True)
        for loc, file in _secret_files(settings)
        if file.is_file() and file.stat().st_mode & 0o004
    )


def _secret_problems(doc: _Doc, settings: DaemonSettings) -> list[Problem]:
    files: list[tuple[Loc, Path | None]] = []
    if settings.mqtt:
        files += [
            (("mqtt", "password_file"), settings.mqtt.password_file),
            (("mqtt", "ca_file"), settings.mqtt.ca_file),
        ]
    if settings.influx:
        files.append((("influx", "token_file"), settings.influx.token_file))
        files.append((("influx", "password_file"), settings.influx.password_file))
    problems = []
    for loc, file in files:
        if file is not None and not (file.is_file() and os.access(file, os.R_OK)):
            problems.append(doc.problem(loc, _("cannot read {file} (not a readable file)").format(file=file)))
    return problems


def _read(path: Path) -> tuple[dict[str, Any], PositionIndex]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        message = _("cannot read the file: {error}").format(error=os_error(exc))
        raise ConfigError([Problem(str(path), 0, "", message)]) from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(match[1]) if match else (max(1, len(text.splitlines())) if "end of document" in str(exc) else 0)
        reason = toml_message(re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc)))
        message = _("not valid TOML: {reason}").format(reason=reason)
        raise ConfigError([Problem(str(path), line, "", message)]) from exc
    return raw, PositionIndex.from_text(text)


def _env_keys(env: Mapping[str, str], exclude: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> dict[Loc, str]:
    keys: dict[Loc, str] = {}
    for name in env:
        if not name.upper().startswith("QUOTAD_") or name.upper() == "QUOTAD_CONFIG":
            continue
        loc = tuple(p.lower() for p in name[len("QUOTAD_") :].split("__"))
        if loc[0] in exclude or (only and loc[0] not in only):
            continue
        keys[loc] = name
    return keys


def _with_env(
    raw: dict[str, Any], env: Mapping[str, str], tables: tuple[str, ...]
) -> tuple[dict[str, Any], dict[Loc, str]]:
    """Apply `QUOTAD_<TABLE>__<KEY>` to the policy's single tables; values are read as TOML values."""
    keys: dict[Loc, str] = {loc: name for loc, name in _env_keys(env, only=tables).items() if len(loc) == 2}
    if not keys:
        return raw, {}
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for loc, name in keys.items():
        section = raw.setdefault(str(loc[0]), {})
        if isinstance(section, dict):
            section[str(loc[1])] = _toml_value(env[name])
    return raw, keys


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_ABSENT = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part, _ABSENT)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def _child_at(raw: Any, loc: Loc) -> Any:
    node = raw
    for part in loc:
        node = _child(node, part)
        if node is _ABSENT:
            break
    return node


def _real_loc(raw: Any, loc: Loc) -> Loc:
    """Drop the union-member tags pydantic puts in a location, keeping the parts that exist in the file."""
    out: list[str | int] = []
    node = raw
    for n, part in enumerate(loc):
        child = _child(node, part)
        if child is not _ABSENT:
            node = child
        elif n == len(loc) - 1 and isinstance(node, dict) and isinstance(part, str) and part.isidentifier():
            pass  # a missing key: name it
        else:
            continue
        out.append(part)
    return tuple(out)


def _message(err: ErrorDetails) -> str:
    """What pydantic found, in the operator's words: our validators' own messages (already in the operator's
    language), pydantic's by their type, followed by the value given (unless it is a table or an array)."""
    kind = err["type"]
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        message = _("unknown kind {tag!r} (known: {known})")
        return message.format(tag=ctx.get("tag"), known=str(ctx.get("expected_tags", "")).replace("'", ""))
    if kind == "extra_forbidden":
        return _("unknown key")
    if kind in ("missing", "union_tag_not_found"):
        return _("required key is missing")
    if kind in ("value_error", "assertion_error"):
        message = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message
    message = pydantic_message(err)
    if "input" in err and not isinstance(err["input"], dict | list):
        message += _(" (got {input!r})").format(input=err["input"])
    return message


def _err_loc(err: ErrorDetails) -> Loc:
    """Where pydantic's error is: a union's missing or unknown tag is the `kind` key's problem."""
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*err["loc"], "kind")
    return tuple(err["loc"])


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """One error per key (the first found says it); warnings are each their own (one key may have two slips)."""
    seen: set[tuple[str, int, str]] = set()
    out = []
    for p in problems:
        if p.warning:
            out.append(p)
        elif (p.file, p.line, p.path) not in seen:
            seen.add((p.file, p.line, p.path))
            out.append(p)
    return out
