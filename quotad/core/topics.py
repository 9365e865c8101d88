"""MQTT topic names as MQTT defines them (3.1.1 and 5.0, "Topic Names and Topic Filters"), checked in one place for
every topic the configuration gives quotad: the meters' `topic` (the policy) and `[mqtt] topic_prefix` (the daemon
file, under which quotad publishes).

MQTT: a topic is UTF-8, 1 to 65,535 bytes, without U+0000; it should not hold control characters (U+0001-U+001F,
U+007F-U+009F); `+` and `#` are wildcards, for subscriptions only; topics starting with `$` are the broker's own
(`$SYS/...`). A topic breaking the first rules gets quotad disconnected ("malformed packet") on every attempt; one
with a newline breaks the broker's log lines and cannot be written in an ACL file.

quotad is stricter on length: a meter topic at most 1,024 bytes, a prefix at most 256. MQTT's 65,535 is what a
packet can carry, not a sane name: a topic travels in every message, is held by the broker for every retained message
and subscription, is printed in every log line and written in the ACL. Real meter topics are tens of bytes
(`tele/<device>/SENSOR`, `shellies/<id>/emeter/0/total`), so 1,024 leaves room for any naming scheme and still catches
a slip (a pasted file, a runaway template); a prefix of 256 keeps every topic quotad builds on it
(`P/T/status/firms/<firm>`, ids of up to 64 characters) within those 1,024 bytes too.
"""

from __future__ import annotations

import unicodedata

from quotad.core.i18n import _

__all__ = ["MAX_PREFIX_BYTES", "MAX_TOPIC_BYTES", "MQTT_MAX_BYTES", "topic_problem"]

MQTT_MAX_BYTES = 65_535
MAX_TOPIC_BYTES = 1024
MAX_PREFIX_BYTES = 256


def topic_problem(value: str, limit: int = MAX_TOPIC_BYTES) -> str | None:
    """What makes `value` unusable as a concrete MQTT topic (one quotad subscribes to or publishes under), in the
    operator's language; None when it is fine. `limit`: quotad's bound in UTF-8 bytes."""
    if not value:
        return _("empty: a topic has at least one character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: an environment variable's bytes that are not UTF-8
        return _("not valid UTF-8 (MQTT topics are UTF-8)")
    if "\x00" in value:
        return _("contains U+0000 (NUL), which MQTT forbids in a topic: the broker would drop the connection")
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return _("contains the control character {char} (U+{code:04X}): MQTT topics must not, and neither a log line "
                 "nor an ACL file can hold it").format(char=repr(control), code=ord(control))  # fmt: skip
    wildcard = next((c for c in value if c in "+#"), None)
    if wildcard is not None:
        return _("contains the wildcard {char!r}: a concrete topic cannot (wildcards are for subscriptions)").format(
            char=wildcard
        )
    if value.startswith("$"):
        return _("starts with '$': such topics are the broker's own ($SYS/...), not for clients")
    if size > MQTT_MAX_BYTES:
        return _("{size} bytes in UTF-8: MQTT allows at most 65,535, and quotad {limit}").format(
            size=f"{size:,}", limit=f"{limit:,}"
        )
    if size > limit:
        return _("{size} bytes in UTF-8: at most {limit} (MQTT allows 65,535; quotad keeps a topic short enough to "
                 "log and to write in an ACL)").format(size=f"{size:,}", limit=f"{limit:,}")  # fmt: skip
    return None
