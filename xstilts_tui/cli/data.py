"""``data status`` and ``data fetch``: the models and data a recipe reads from the hub,
whether this machine has them, and fetching them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from xstilts_tui.errors import UsageError
from xstilts_tui.plan.stages import build_plan
from xstilts_tui.recipe.parse import load_recipe
from xstilts_tui.recipe.schema import RecipeError
from xstilts_tui.tasks.registry import TASKS
from xstilts_tui.cli.options import add_set, check_writable


def _inputs(recipe, plan=None):
    """The plan, the recipe's hub inputs and whether each is on this machine."""
    from xstilts_tui.recipe.inputs import need_status, recipe_needs

    plan = plan or build_plan(recipe)
    needs = recipe_needs(plan)
    return plan, needs, [need_status(n) for n in needs]


def check_inputs(file: str, recipe, plan=None, fetch: bool = False) -> bool:
    """Refuse, in one line, a recipe whose hub models or data are missing while the hub
    cannot be used (HF_HUB_OFFLINE, or no answer to one short probe). With ``fetch``,
    fetch what is missing first (a stage's key holds the hashes of what it reads, so
    they are had before the stages are keyed); True when something was fetched."""
    from xstilts_tui.data.sources import data_root, hub_reachable
    from xstilts_tui.recipe.inputs import missing_line

    plan, needs, statuses = _inputs(recipe, plan)
    missing = [need for need, status in zip(needs, statuses) if not status["present"]]
    if not missing:
        return False
    if not hub_reachable():
        raise RecipeError(missing_line(file, statuses, needs))
    if not fetch:
        return False
    from xstilts_tui.data.sources import bound_hub_timeouts

    bound_hub_timeouts()
    print(f"fetching {len(missing)} input(s) of {file} that are not on this machine", file=sys.stderr)
    failed = _fetch_needs(missing, data_root(), None, out=sys.stderr)
    if failed:
        raise UsageError(f"{file}: {failed} input(s) could not be fetched (above); nothing was run")
    return True


def _fetch_needs(needs, root: Path, cache_dir: str | None, out=None) -> int:
    """Fetch each need not on this machine, a line each; how many failed."""
    from xstilts_tui.data.sources import DataSourceError, SourceUnavailable, fetch_first, fetch_model
    from xstilts_tui.recipe.inputs import need_status
    from xstilts_tui.data.download import DownloadError

    out = out or sys.stdout
    failed = 0
    for need in needs:
        status = need_status(need, root, cache_dir)
        if status["present"]:
            print(f"have    {need.label}: {status['source']} ({_size(status['bytes'])})", file=out)
            continue
        print(f"fetch   {need.label}", flush=True, file=out)
        try:
            if need.kind == "model":
                folder = fetch_model(*need.model, cache_dir=cache_dir)
                print(f"  done  {need.label}: {folder}", file=out)
            else:
                source, _ = fetch_first(need.sources, root)
                print(f"  done  {need.label}: {source.label}", file=out)
        except (DataSourceError, SourceUnavailable, DownloadError) as exc:
            failed += 1
            manual = TASKS[need.label.split()[0]].manual if need.kind == "data" else ""
            print(f"error: {need.label}: {exc}{'; ' + manual if manual else ''}", file=sys.stderr)
        except Exception as exc:  # the network, a proxy, a server's answer: one line, go on
            failed += 1
            text = (str(exc).strip().splitlines() or [""])[0][:160]
            print(f"error: {need.label}: {type(exc).__name__} {text}".rstrip(), file=sys.stderr)
    return failed


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return "-"


def cmd_data_status(file: str, as_json: bool, settings: tuple[str, ...] = ()) -> int:
    """Every input the recipe reads, from the hub and from local paths, and whether it is
    here: exit 0 means the recipe can run on this machine."""
    from xstilts_tui.data.sources import data_root
    from xstilts_tui.recipe.inputs import local_inputs

    recipe = load_recipe(file, settings)
    _, needs, statuses = _inputs(recipe)
    statuses += local_inputs(recipe)
    missing = sum(not s["present"] for s in statuses)
    here = sum(s["bytes"] or 0 for s in statuses if s["present"])
    if as_json:
        print(json.dumps({"recipe": recipe.name, "data_root": str(data_root()),
                          "inputs": statuses, "missing": missing, "bytes_here": here}, indent=1))
        return 1 if missing else 0
    from xstilts_tui.results.store import text_table

    rows = [[s.get("state") or ("here" if s["present"] else "MISSING"), s["kind"], s["need"],
             _size(s["bytes"]), s["source"] if s["present"] or s["kind"] == "local"
             else "not fetched: " + s["source"], str(len(s["stages"])) if s["kind"] != "local" else "-"]
            for s in statuses]
    # the source column takes what 100 columns leave
    others = sum(max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in
                 enumerate(["state", "kind", "input", "size", "", "stages"]) if i != 4) + 2 * 5
    room = max(16, 100 - others)
    for row in rows:  # a path keeps its end, a hub source its start
        if len(row[4]) > room:
            row[4] = "..." + row[4][3 - room:] if row[1] == "local" else row[4][:room - 3] + "..."
    hub = len(statuses) - sum(1 for s in statuses if s["kind"] == "local")
    print(f"recipe {recipe.name}: {hub} inputs from the hub, {len(statuses) - hub} local; "
          f"{missing} missing, {_size(here)} here")
    print(f"data root: {data_root()}")
    if rows:
        print(text_table([["state", "kind", "input", "size", "source", "stages"]] + rows, left=3))
    if missing:
        print("missing: `xstilts-tui data fetch` gets the hub inputs (sizes known once listed);")
        print("set or copy the local paths named above")
    return 1 if missing else 0


def cmd_data_fetch(file: str, to: str | None, settings: tuple[str, ...] = ()) -> int:
    import os

    from xstilts_tui.data.sources import DATA_ROOT_ENV, bound_hub_timeouts, data_root, hub_offline, hub_problem
    from xstilts_tui.recipe.inputs import need_status

    recipe = load_recipe(file, settings)
    if hub_offline():
        raise UsageError("data fetch: HF_HUB_OFFLINE is set; fetching needs the hub (unset it)")
    cache_dir = None
    if to:
        target = Path(to).resolve()
        if target.exists() and not target.is_dir():
            raise UsageError(f"data fetch: --to {to}: not a folder")
        check_writable(target, "data fetch: --to")
        os.environ[DATA_ROOT_ENV] = str(target / "data")
        cache_dir = str(target / "hub")
    _, needs, _ = _inputs(recipe)
    root = data_root()
    if not all(need_status(n, root, cache_dir)["present"] for n in needs):  # else: no network
        problem = hub_problem()
        if problem is not None:
            print(f"error: data fetch: the hub at {problem}; check the network, a proxy or "
                  "HF_ENDPOINT, or fetch where the hub answers and copy the folder (--to)",
                  file=sys.stderr)
            return 1
        bound_hub_timeouts()
    failed = _fetch_needs(needs, root, cache_dir)
    settings = [f"{DATA_ROOT_ENV}={root}"] + ([f"HF_HUB_CACHE={cache_dir}"] if cache_dir else [])
    print("\nto run this recipe from this copy on a machine without network, set:")
    print("  export " + " ".join(settings + ["HF_HUB_OFFLINE=1"]))
    if failed:
        print(f"error: {failed} of {len(needs)} inputs could not be fetched", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="the models and data a recipe reads from the hub: check, fetch")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = data_sub.add_parser("status", help="for every stage, each model and data split it needs, "
                            "its source, whether it is on this machine and its size (no network); "
                            "exit 0 when all are here, 1 otherwise")
    q.add_argument("file", metavar="RECIPE")
    q.add_argument("--json", action="store_true", help="print the same as JSON")
    add_set(q)
    q = data_sub.add_parser("fetch", help="download what the recipe needs (resumable, verified) "
                            "and print what to set so that an offline machine runs it")
    q.add_argument("file", metavar="RECIPE")
    q.add_argument("--to", metavar="DIR", help="put data in DIR/data and models in DIR/hub "
                   "(default: $XSTILTS_DATA_ROOT and the Hugging Face cache)")
    add_set(q)
