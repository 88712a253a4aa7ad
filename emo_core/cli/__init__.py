"""Command-line interface: one module per sub-command, dispatched by :mod:`.main`."""
