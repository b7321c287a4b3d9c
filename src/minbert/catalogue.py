"""Every technique, imported once so that its settings and names are registered (settings.py) before a config
is built: the one module above both the techniques and the config loader. minbert/__init__.py imports it."""
from . import combine, heads, losses, optim, schedules, smart  # noqa: F401
from .training import distill  # noqa: F401
