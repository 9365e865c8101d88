"""What goes out on the notice channels, to whom (SPEC "Notices and channels"), as pure functions of the engine.

A `Notice` is one message for one channel. Its `id` is stable and unique for what it says and where it goes (the
delivery's idempotency key: never sent twice), so the same event always makes the same notices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["Notice"]


@dataclass(frozen=True)
class Notice:
    """One message on one channel.

    `kind`: "rota", "alert" (a firm's notice or warning), "cutoff" (停电通知书), "lifted" (恢复供电), "breach",
    "escalation", "residents", "report". A cutoff notice names its order (`firm`, `alert_id`); `to_firm` marks the
    copy for the firm's own channel, whose delivery marks the order notified. A report lists its `files` (names
    under `state_dir/reports/`) to attach where the channel can (email)."""

    id: str
    channel: str
    kind: str
    title: str
    text: str
    firm: str | None = None
    alert_id: str | None = None
    to_firm: bool = False
    files: tuple[str, ...] = ()

    def to_json(self) -> str:
        body = {"id": self.id, "channel": self.channel, "kind": self.kind, "title": self.title, "text": self.text,
                "firm": self.firm, "alert_id": self.alert_id, "to_firm": self.to_firm,
                "files": list(self.files)}  # fmt: skip
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Notice:
        data = json.loads(text)
        return cls(
            str(data["id"]), str(data["channel"]), str(data["kind"]), str(data["title"]), str(data["text"]),
            data.get("firm"), data.get("alert_id"), bool(data.get("to_firm")), tuple(data.get("files") or ()),
        )  # fmt: skip
