"""Container side of the kit: the shared week-1 benchmark (python -m bench).

Importable without torch (the host imports bench.options to validate arguments early);
modules that need torch import it themselves.
"""
