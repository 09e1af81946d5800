"""Container side of the kit: the shared week-1 benchmark (python -m bench).

Importable without torch; it shares only the neutral core (core/) with the host side, never kit/;
modules that need torch import it themselves.
"""
