"""The terminal dashboard: a module per screen, a thin app that composes them."""

from xstilts_tui.dashboard.app import XstiltsApp, run_dashboard
from xstilts_tui.dashboard.context import RunContext
from xstilts_tui.dashboard.recipes import SHIPPED_RECIPES

__all__ = ["XstiltsApp", "run_dashboard", "RunContext", "SHIPPED_RECIPES"]
