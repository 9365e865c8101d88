"""`[reports]` in the policy file: validated like the other sections, each problem with its file:line."""

from pathlib import Path

from quotad.cli import main

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_a_bad_daily_at_is_a_config_error_with_its_line(tmp_path: Path, capsys: object) -> None:
    text = (CONFIG / "township.toml").read_text(encoding="utf-8")
    policy = tmp_path / "township.toml"
    policy.write_text(text + '\n[reports]\ndaily_at = "8 am"\n', encoding="utf-8")
    line = len(text.splitlines()) + 3
    assert main(["check-config", "-c", str(policy)]) == 2
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert f"{policy}:{line}: reports.daily_at:" in out
    policy.write_text(text + '\n[reports]\ndaily_at = "07:30"\n', encoding="utf-8")
    assert main(["check-config", "-c", str(policy)]) == 0
