"""check-config as an operator runs it: the whole process, for the shipped policy and a 2,000-firm policy,
beside the floor `python -c pass` measured in the same run. Prints, last:
`check_config: X s, floor Y s, ratio R` (the shipped policy; target < 1 s)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def big_policy(path: Path, firms: int) -> Path:
    """The shipped township with `firms` general firms (and a meter each) added."""
    text = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    for n in range(firms):
        text += (
            f'\n[[firms]]\nid = "x-{n:04d}"\nname = "示例企业 {n:04d}"\nkind = "general"\nbaseline_kwh = {5000 + n}\n'
            f'\n[[meters]]\nid = "x-{n:04d}-main"\nfirm = "x-{n:04d}"\n[meters.mqtt]\nformat = "json"\n'
        )
    path.write_text(text, encoding="utf-8")
    return path


def timed(args: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t0)
        assert result.returncode in (0,), result.stdout + result.stderr
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    quotad = [sys.executable, "-m", "quotad", "check-config", "-c"]
    with tempfile.TemporaryDirectory() as tmp:
        big = big_policy(Path(tmp) / "big.toml", 2000)
        floor = timed([sys.executable, "-c", "pass"], rounds)
        shipped = timed([*quotad, str(ROOT / "config" / "quotad.toml")], rounds)
        large = timed([*quotad, str(big)], max(3, rounds // 2))
    print(f"2,000-firm policy: {large:.2f} s")
    print(f"check_config: {shipped:.2f} s, floor {floor:.2f} s, ratio {shipped / floor:.1f}")


if __name__ == "__main__":
    main()
