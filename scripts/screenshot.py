#!/usr/bin/env python
"""An SVG screenshot of the dashboard, as Textual writes it: a finished run's folder opened
read-only (``xstilts-tui --results DIR``), on the screen asked for, at 120 x 36.

    python scripts/screenshot.py RUN_DIR docs/dashboard.svg [--tab scores] [--delta]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEYS = {"recipes": "1", "runs": "2", "scores": "3", "compare": "4", "past": "5"}


async def shoot(run_dir: Path, out: Path, tab: str, delta: bool) -> None:
    from xstilts_tui.dashboard import SHIPPED_RECIPES, XstiltsApp

    app = XstiltsApp([SHIPPED_RECIPES], run_dir, None)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(1.0)
        await pilot.press(KEYS[tab])
        if delta:
            await pilot.press("d")
        await pilot.pause(1.0)
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tab", choices=sorted(KEYS), default="scores")
    parser.add_argument("--delta", action="store_true", help="the Scores tab's deltas to the baseline")
    args = parser.parse_args()
    if not (args.run_dir / "run.json").is_file():
        print(f"error: {args.run_dir}: no run.json; expected a run's output folder", file=sys.stderr)
        return 2
    asyncio.run(shoot(args.run_dir, args.out, args.tab, args.delta))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
