"""What a difference of 0.001 means: the demo's seed-to-seed spread, its time
plan replayed, and ``max_time`` measured against the wall clock.

Runs ``examples/quickstart.py`` (what ``make demo`` runs: MNIST 10k, budget
1e7, ``max_time=540``) once per seed as a subprocess, each writing its time
plan (``--save-plan``), then replays the first seed's plan (``--plan``) and
checks that the replay prints the same test accuracy, FLOPs and steps.

For each run the table has the test accuracy, the FLOPs, the architectures
tried, the search's and the whole fit's seconds, and the refit's epoch time;
``fit <= max_time + 1 epoch`` is the promise ``max_time`` makes on an idle
machine (the plan models seconds; the clock is only a safety net).

    python benchmarks/seed_spread.py [--seeds 0,1,2,3,4] [--out benchmarks/results/seed_spread.json]
        [--smoke]

``--smoke`` runs the quickstart in its smoke mode (500 images, seconds) with
two seeds: does the script work?
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.py"
#: What the quickstart passes as max_time (full run, smoke run).
MAX_TIME = {False: 540, True: 60}

FIELDS = {
    "accuracy": (r"^test accuracy:\s+([0-9.]+)", float),
    "flops": (r"^FLOPs per image:\s+([0-9,]+)", lambda s: int(s.replace(",", ""))),
    "architectures": (r"^architectures tried:\s+(\d+)", int),
    "fit_s": (r"^fit time:\s+([0-9.]+) s", float),
    "search_s": (r"^fit time:.*\(search ([0-9.]+) s", float),
}
REFIT = r"^refit:\s+(\d+) epochs .*\(([0-9.]+) s,"


def parse(out: str) -> dict:
    """The numbers a quickstart run prints, and its step lines without their seconds."""
    row = {}
    for name, (pattern, cast) in FIELDS.items():
        m = re.search(pattern, out, flags=re.M)
        if m is None:
            raise ValueError(f"quickstart printed no {name!r} line:\n{out[-2000:]}")
        row[name] = cast(m.group(1))
    m = re.search(REFIT, out, flags=re.M)
    row["refit_epochs"], row["refit_s"] = (int(m.group(1)), float(m.group(2))) if m else (0, 0.0)
    row["epoch_s"] = row["refit_s"] / row["refit_epochs"] if row["refit_epochs"] else 0.0
    row["steps"] = [re.sub(r" \([0-9.]+s\)$", "", line)
                    for line in re.findall(r"^step .*$", out, flags=re.M)]
    return row


def run(seed: int, smoke: bool, *args: str) -> dict:
    env = {**os.environ, "RESBUILDER_SMOKE": "1" if smoke else "0"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(QUICKSTART), "--seed", str(seed), *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"quickstart --seed {seed} failed:\n{out.stderr[-3000:]}")
    row = parse(out.stdout)
    row.update(seed=seed, process_s=time.perf_counter() - t0, load=os.getloadavg()[0])
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--out", default="benchmarks/results/seed_spread.json")
    p.add_argument("--smoke", action="store_true", help="quickstart smoke mode, seeds 0,1")
    a = p.parse_args(argv)
    seeds = [0, 1] if a.smoke else [int(s) for s in a.seeds.split(",")]
    max_time = MAX_TIME[a.smoke]
    rows, plans = [], Path(tempfile.mkdtemp(prefix="seed_spread_"))
    for seed in seeds:
        rows.append(run(seed, a.smoke, "--save-plan", str(plans / f"plan{seed}.json")))
        print(f"seed {seed}: {rows[-1]['accuracy']:.4f}", flush=True)
    replay = run(seeds[0], a.smoke, "--plan", str(plans / f"plan{seeds[0]}.json"))
    first = rows[0]
    same = {k: replay[k] == first[k] for k in ("accuracy", "flops", "architectures", "steps")}

    print(f"\n| seed | test acc | FLOPs | archs | search s | fit s | refit epoch s "
          f"| fit <= {max_time} s + 1 epoch | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows + [dict(replay, seed=f"{seeds[0]} (replay)")]:
        ok = r["fit_s"] <= max_time + r["epoch_s"]
        print(f"| {r['seed']} | {r['accuracy']:.4f} | {r['flops']:,} | {r['architectures']} "
              f"| {r['search_s']:.0f} | {r['fit_s']:.0f} | {r['epoch_s']:.1f} "
              f"| {'yes' if ok else 'NO'} | {r['load']:.2f} |")
    accs = [r["accuracy"] for r in rows]
    spread = {"median": statistics.median(accs), "min": min(accs), "max": max(accs),
              "stdev": statistics.stdev(accs) if len(accs) > 1 else 0.0}
    print(f"\ntest accuracy over {len(accs)} seeds: median {spread['median']:.4f}, "
          f"range {spread['min']:.4f}-{spread['max']:.4f}, stdev {spread['stdev']:.4f}")
    print(f"replay of seed {seeds[0]}'s plan: " + ", ".join(
        f"{k} {'same' if v else 'DIFFERENT'}" for k, v in same.items()))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"max_time": max_time, "rows": rows, "replay": replay,
                               "replay_same": same, "spread": spread}, indent=1))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
