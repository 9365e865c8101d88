"""The console's users file (`quotad.config.users`, `quotad user add`): hashes only, private, every problem at its
line, and checked by check-config with the rest of the daemon file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from quotad.config.users import add_user, read_users
from quotad.core.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]


def test_a_user_added_is_kept_as_an_argon2_hash_in_a_private_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    assert add_user(users, "王督查", "inspector", "s3cret-pass")
    assert not add_user(users, "王督查", "operator", "another-pass")  # changed, not added twice
    assert users.stat().st_mode & 0o777 == 0o600
    assert "s3cret-pass" not in users.read_text(encoding="utf-8")
    found = read_users(users)
    assert list(found) == ["王督查"]
    assert found["王督查"].role == "operator"
    assert PasswordHasher().verify(found["王督查"].hash, "another-pass")
    with pytest.raises(UsageError, match="8 characters"):
        add_user(users, "x", "viewer", "short")
    with pytest.raises(UsageError, match="role"):
        add_user(users, "x", "admin", "long-enough")


def test_every_problem_of_the_file_at_its_line(tmp_path: Path) -> None:
    users = tmp_path / "users"
    good = PasswordHasher().hash("pass-word-1")
    users.write_text(
        f"# the console's users\nli viewer {good}\nwang inspector clear-password\nli operator {good}\n"
        f"zhang admin {good}\nbad line\n",
        encoding="utf-8",
    )
    users.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        read_users(users)
    lines = [str(p) for p in caught.value.problems]
    assert lines == [
        f"{users}:3: the third field is an argon2 hash (made by `quotad user add`), never a clear password",
        f"{users}:4: user 'li' is listed twice",
        f"{users}:5: role 'admin' is not one of viewer, inspector, operator",
        f"{users}:6: a user is one line: name role hash",
    ]


def test_a_world_readable_users_file_is_refused_by_check_config(tmp_path: Path) -> None:
    users = tmp_path / "users"
    add_user(users, "leader", "viewer", "pass-word-1")
    policy = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    (tmp_path / "township.toml").write_text(policy, encoding="utf-8")
    config = tmp_path / "quotad.toml"
    config.write_text(
        f'policy = "township.toml"\nstate_dir = "{tmp_path}/state"\n\n[web]\nlisten = "127.0.0.1:8080"\n'
        'users_file = "users"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAD_")}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quotad", "check-config", "-c", str(config)],
                              capture_output=True, text=True, env=env, timeout=60)  # fmt: skip

    assert check().returncode == 0
    users.chmod(0o644)
    refused = check()
    assert refused.returncode == 2
    assert refused.stdout.strip() == (
        f"{config}:6: web.users_file: the users file is readable by every user: chmod 600 it (it holds the "
        "password hashes)"
    )
    users.chmod(0o600)
    config.write_text(config.read_text(encoding="utf-8").replace("127.0.0.1:8080", "8080"), encoding="utf-8")
    assert "web.listen: listen is host:port" in check().stdout


def test_user_add_reads_the_password_from_standard_input(tmp_path: Path) -> None:
    users = tmp_path / "etc" / "users"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAD_")}
    done = subprocess.run(
        [sys.executable, "-m", "quotad", "user", "add", "zhao", "--role", "inspector", "--file", str(users)],
        input="pass-word-2\n", capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"user zhao added (inspector) to {users}"
    assert "pass-word-2" not in done.stdout + done.stderr
    assert PasswordHasher().verify(read_users(users)["zhao"].hash, "pass-word-2")
