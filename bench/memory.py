"""Memory: the daemon's core holding 10,000 meters' state, beside a bare interpreter with the same imports.

A policy of 2,000 general firms with 5 meters each; a day of readings every 15 minutes (960,000) through the
engine; then the process's resident set size. The floor is a fresh interpreter that imports the same modules
and builds nothing. Prints, last: `memory: X MB, floor Y MB, ratio R` (target < 150 MB)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib

FIRMS, PER_FIRM = 2000, 5
IMPORTS = "import quotad.core.engine, quotad.shell.journal, quotad.config.load, quotad.core.feed"


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    import resource

    return pages * resource.getpagesize() / 2**20


def policy_text() -> str:
    text = '[township]\nid = "big"\nname = "大镇"\ndaily_cap_kwh = 10000000\n'
    text += "[control]\nstart = 2010-10-01\nend = 2010-12-31\n"
    for f in range(FIRMS):
        text += f'[[firms]]\nid = "g{f}"\nname = "企业{f}"\nkind = "general"\nbaseline_kwh = 100000\n'
        for m in range(PER_FIRM):
            text += f'[[meters]]\nid = "g{f}-{m}"\nfirm = "g{f}"\n[meters.mqtt]\n'
    return text


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    from quotad.core.engine import Engine
    from quotad.core.policy import Policy
    from quotad.core.readings import Reading
    from quotad.schedule.calendar import MICROS_PER_S

    policy = Policy.model_validate(tomllib.loads(policy_text()))
    engine = Engine(policy)
    meters = [m.id for m in policy.meters]
    start = 1287504000 * MICROS_PER_S  # 2010-10-20 00:00 +08:00
    step = 15 * 60 * MICROS_PER_S
    for k in range(97):
        t = start + k * step
        for n, meter in enumerate(meters):
            engine.ingest(Reading(meter, t, 1000.0 + k * (1 + n % 7) * 0.5))
    ours = rss_mb()
    floor = float(
        subprocess.run(
            [sys.executable, "-c", f"{IMPORTS}\n{_RSS_SNIPPET}"], capture_output=True, text=True, check=True
        ).stdout
    )
    print(f"{len(meters)} meters, {97 * len(meters)} readings ingested")
    print(f"memory: {ours:.0f} MB, floor {floor:.0f} MB, ratio {ours / floor:.1f}")


_RSS_SNIPPET = (
    "import resource\nprint(int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 2**20)"
)

if __name__ == "__main__":
    main()
