"""`quotad notify test --channel NAME`: one test message on one channel, and what the channel answered.

Exit 0: delivered; 1: the channel refused it or could not be reached (its answer is printed); 2: no such channel,
or a configuration that does not load (like every command).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from typing import TextIO

from quotad.config.load import Loaded
from quotad.core.errors import UsageError
from quotad.core.i18n import _

__all__ = ["add_notify_parser", "notify_test"]


def add_notify_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: Callable[..., None]) -> None:
    p = sub.add_parser("notify", help=_("notice channels"), description=_("notice channels"))
    notify_sub = p.add_subparsers(dest="notify_command", required=True, metavar="ACTION")
    help_text = _("send a test message on a channel and print what it answered")
    test = notify_sub.add_parser("test", help=help_text, description=help_text)
    test.add_argument("--channel", required=True, help=_("the channel's name ([[channels]] name)"))
    config(test)


def notify_test(loaded: Loaded, name: str, out: TextIO, now: dt.datetime | None = None) -> int:
    from quotad.shell.channels import Message, send

    channels = {channel.name: channel for channel in loaded.daemon.channels} if loaded.daemon else {}
    channel = channels.get(name)
    if channel is None:
        known = ", ".join(sorted(channels)) or _("none")
        raise UsageError(_("no channel {name!r} in the daemon file (channels: {known})").format(name=name, known=known))
    when = now or dt.datetime.now(dt.UTC)
    township = loaded.policy.township.name
    text = f"quotad 测试消息：{township} 通知渠道 {name} 已接通（{when.astimezone():%Y-%m-%d %H:%M}）"
    message = Message(f"test-{name}-{when:%Y%m%dT%H%M%S%f}", "test", "quotad 测试消息", text)
    outcome = send(channel, message)
    if outcome.delivered:
        print(
            _("delivered on {name} ({kind}): {answer}").format(name=name, kind=channel.kind, answer=outcome), file=out
        )
        return 0
    said = (
        _("not delivered on {name} ({kind}): {answer}")
        + " "
        + (_("(worth trying again later)") if outcome.retry else _("(trying again will not help)"))
    )
    print(said.format(name=name, kind=channel.kind, answer=outcome), file=out)
    return 1


def main(args: argparse.Namespace, loaded: Loaded) -> int:
    return notify_test(loaded, args.channel, sys.stdout)
