"""How planning scales with the number of stages: the demo recipe with 100, 400 and 1000
seeds (901, 3601 and 9001 stages), building the plan and its data (what `plan` prints),
time per stage against the smallest plan's (1.0: linear).

    python scripts/bench_plan.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xstilts_tui.cli.options import with_overrides as _with_overrides  # noqa: E402
from xstilts_tui.plan.show import plan_data  # noqa: E402
from xstilts_tui.plan.stages import build_plan  # noqa: E402
from xstilts_tui.recipe.parse import load_recipe  # noqa: E402


def main() -> int:
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "demo.toml")
    base = None
    print(f"{'seeds':>6} {'stages':>7} {'seconds':>8} {'ms/stage':>9} {'x smallest':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for seeds in (100, 400, 1000):
            started = time.perf_counter()
            plan = build_plan(_with_overrides(recipe, tuple(range(1, seeds + 1))),
                              Path(folder) / "out", Path(folder) / "cache")
            plan_data(plan)
            took = time.perf_counter() - started
            per = took / len(plan.stages) * 1000
            base = base or per
            print(f"{seeds:>6} {len(plan.stages):>7} {took:>8.2f} {per:>9.3f} {per / base:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
