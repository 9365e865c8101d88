"""The console's forms: an order's change, an order by hand, a talk, a visit with its photo. Each is the same
journaled command as the CLI's (`quotad.shell.actions`), carried out by the daemon at once, with the logged-in user
as `by`; the form's own id is the command's, so a second click or a resent form changes nothing more."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from quotad.core import console
from quotad.core.errors import QuotadError, StoreError
from quotad.core.orders import STATE_NAMES, OrderError
from quotad.web.auth import Session
from quotad.web.common import ACTION_WORDS, RESULT_NAMES, Base, back_to, redirect, take_cid, with_query

__all__ = ["Forms"]

log = logging.getLogger("quotad.web.app")


class Forms(Base):
    def _act(self, request: web.Request, what: str, back: str, kind: str, firm: str, /, **fields: Any) -> web.Response:
        """Carry out a command as the CLI would (journaled once per command id), as the logged-in user."""
        from quotad.commands.orders import command

        session: Session = request["session"]
        if not console.allowed(session.role, what):
            log.warning("console: %s (%s) may not %s: refused", session.user, session.role, what)
            return self._refused(request, 403, f"您的角色（{console.ROLE_NAMES.get(session.role)}）不能执行此操作")
        try:
            body = command(self.daemon.loaded, kind, firm, session.user, **fields)
        except QuotadError as exc:
            raise redirect(with_query(back, error=str(exc))) from None
        if request.get("cid"):  # the form's own id: a second click, or a resubmitted form, changes nothing more
            body["id"] = request["cid"]
        try:
            outcome = self.daemon.perform(body)
        except OrderError as exc:
            raise redirect(with_query(back, error=str(exc))) from None
        except StoreError as exc:
            log.error("console: %s's command was not recorded: %s", session.user, exc)
            raise redirect(with_query(back, error="状态目录拒绝写入，未执行，请稍后重试")) from None
        said = f"{self._names().get(firm, firm)}：{ACTION_WORDS[what]}已记录"
        if "state" in outcome:
            said += f"，停电令{STATE_NAMES.get(outcome['state'], outcome['state'])}"
        raise redirect(with_query(back, said=said))

    async def order_action(self, request: web.Request) -> web.Response:
        form = await request.post()
        firm, action = request.match_info["firm"], request.match_info["action"]
        if action not in ("confirm", "dismiss", "notified", "executed", "lift"):
            raise web.HTTPNotFound()
        take_cid(request, form)
        back = back_to(form, "/orders")
        fields: dict[str, Any] = {"action": action}
        reason = str(form.get("reason", "")).strip()
        if action in ("dismiss", "lift") or reason:
            fields["reason"] = reason
        return self._act(request, action, back, "order", firm, **fields)

    async def order_issue(self, request: web.Request) -> web.Response:
        form = await request.post()
        take_cid(request, form)
        firm, reason = str(form.get("firm", "")), str(form.get("reason", ""))
        return self._act(request, "issue", back_to(form, "/orders"), "issue", firm, reason=reason)

    async def talk(self, request: web.Request) -> web.Response:
        form = await request.post()
        take_cid(request, form)
        firm, note = str(form.get("firm", "")), str(form.get("note", ""))
        return self._act(request, "talk", back_to(form, f"/firms/{firm}"), "talk", firm, note=note)

    async def visit(self, request: web.Request) -> web.Response:
        """A visit recorded from the phone, with its photo: checked and kept first, removed if refused."""
        from quotad.shell import photos

        form = await request.post()
        take_cid(request, form)
        session: Session = request["session"]
        back = back_to(form, "/inspections")
        if not console.allowed(session.role, "visit"):
            return self._refused(request, 403, f"您的角色（{console.ROLE_NAMES.get(session.role)}）不能记录督查")
        firm, result = str(form.get("firm", "")), str(form.get("result", ""))
        finding, order = str(form.get("finding", "")).strip(), form.get("order") == "1"
        if result not in RESULT_NAMES:
            raise redirect(with_query(back, error="请选择督查结果"))
        if not finding:
            raise redirect(with_query(back, error="请填写现场发现"))
        if order and result != "violation":
            raise redirect(with_query(back, error="只有“违规”的督查才能同时下达停电令"))
        if order and not console.allowed(session.role, "issue"):  # an inspector records; an operator issues
            raise redirect(with_query(back, error="下达停电令需操作员角色；请只记录违规"))
        upload = form.get("photo")
        record, kept = None, None
        if isinstance(upload, web.FileField) and upload.filename:
            state_dir = self.daemon.settings.state_dir
            with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".upload-") as tmp:
                tmp.write(upload.file.read(photos.MAX_BYTES + 1))
                tmp.flush()
                try:
                    photo = photos.read(Path(tmp.name))
                except QuotadError as exc:
                    raise redirect(with_query(back, error=f"照片未保存：{exc}")) from None
            path, new = photos.keep(photo, state_dir)
            record, kept = photo.record(), (path if new else None)
        try:
            return self._act(request, "visit", back, "inspection", firm, result=result, finding=finding,
                             issue_order=order, photo=record)  # fmt: skip
        except web.HTTPSeeOther as refused:
            if kept is not None and "error=" in str(refused.location):
                kept.unlink(missing_ok=True)
            raise
