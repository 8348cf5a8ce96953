"""The terminal dashboard: a module per screen, a thin app that composes them."""

from .app import XstiltsApp, run_dashboard
from .context import RunContext
from .recipes import SHIPPED_RECIPES

__all__ = ["XstiltsApp", "run_dashboard", "RunContext", "SHIPPED_RECIPES"]
