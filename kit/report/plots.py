"""PNG plots for the reports: deterministic bytes, no pyplot, no global backend switch.

matplotlib is imported here only, and this module only when plotting (it is the slowest import of the
report path). Determinism: matplotlib's default style (a user's matplotlibrc is ignored), its bundled
DejaVu Sans font, a fixed size and dpi, and no 'Software' metadata in the PNG. Agg PNGs carry no
timestamp, so the same inputs give the same bytes with the same matplotlib/freetype build. `text` adds
PNG tEXt chunks (the report stores the plot's input key there: see kit/report/__init__.py).
"""
from __future__ import annotations

import io
from typing import Optional, Sequence

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd")
DPI = 100
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "path.simplify": True,
    "svg.hashsalt": "awq-kit",
}


def _render(draw, size: tuple[float, float], text: Optional[dict[str, str]] = None) -> bytes:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        fig = Figure(figsize=size, dpi=DPI)
        FigureCanvasAgg(fig)
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None, **(text or {})})
    return buf.getvalue()


def _short(text: str, width: int = 42) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def week1_png(labels: Sequence[str], series: Sequence[tuple[str, Sequence[Optional[float]], Sequence[Optional[float]]]],
              note: Optional[str] = None, text: Optional[dict[str, str]] = None) -> bytes:
    """Grouped bars: x = backend label, one bar per series (published first), TTFT and TPOT side by side.

    series: (name, ttft per label, tpot per label); None = not measured, drawn as a '—' at the base.
    """
    values = [v for _, t, p in series for v in (*t, *p) if v]
    log = bool(values) and max(values) / min(values) > 100

    def draw(fig) -> None:
        axes = fig.subplots(1, 2)
        width = 0.8 / max(len(series), 1)
        for ax, metric, idx in ((axes[0], "TTFT", 1), (axes[1], "TPOT", 2)):
            for s, entry in enumerate(series):
                name, vals = entry[0], entry[idx]
                xs = [i - 0.4 + width * (s + 0.5) for i in range(len(labels))]
                heights = [v if v else 0.0 for v in vals]
                bars = ax.bar(xs, heights, width=width * 0.95, color=COLORS[s % len(COLORS)], label=name)
                for x, v, bar in zip(xs, vals, bars):
                    if v:
                        ax.annotate(f"{v:.1f}", (x, bar.get_height()), ha="center", va="bottom", fontsize=6,
                                    xytext=(0, 1), textcoords="offset points")
                    else:  # nothing reproduced: a dash on the axis (x in data, y in axes coordinates)
                        ax.annotate("—", (x, 0), xycoords=ax.get_xaxis_transform(), ha="center", va="bottom",
                                    fontsize=8, xytext=(0, 1), textcoords="offset points")
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels([l.replace(" (", "\n(") for l in labels])
            ax.set_title(f"median {metric}" + (" (log scale)" if log else ""))
            ax.set_ylabel("ms")
            if log:
                ax.set_yscale("log")
                ax.set_ylim(min(values) / 2, max(values) * 3)
            else:
                ax.set_ylim(0, (max(values) if values else 1.0) * 1.15)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, [_short(n, 80) for n in names], loc="lower center",
                   ncol=1 if len(series) > 2 else len(series), fontsize=7, frameon=False)
        title = "Week 1: reproduced vs published (— = nothing reproduced)"
        fig.suptitle(title if not note else f"{title}\n{note}", fontsize=10)
        height = 4.2 + 0.18 * len(series)
        fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.6 / height, bottom=(0.75 + 0.18 * len(series)) / height,
                            wspace=0.25)

    return _render(draw, (10, 4.2 + 0.18 * len(series)), text)


def week2_png(series: Sequence[tuple[str, str, Sequence[tuple[str, float]]]], note: Optional[str] = None,
              text: Optional[dict[str, str]] = None) -> bytes:
    """One horizontal bar chart per block (published first, then each reproduced phase): top ops by self time."""
    n = max(len(series), 1)

    def draw(fig) -> None:
        axes = fig.subplots(n, 1, squeeze=False)[:, 0]
        for s, (ax, (title, column, ops)) in enumerate(zip(axes, series)):
            names = [_short(name) for name, _ in ops][::-1]
            vals = [v for _, v in ops][::-1]
            ax.barh(range(len(vals)), vals, color=COLORS[s % len(COLORS)])
            ax.set_yticks(range(len(vals)))
            ax.set_yticklabels(names, fontsize=7)
            ax.set_title(f"{title}: {column} per op", fontsize=9, loc="left")
            ax.set_xlabel("ms", fontsize=8)
            ax.grid(axis="x", alpha=0.3)
            ax.set_axisbelow(True)
            for y, v in enumerate(vals):
                ax.annotate(f"{v:.3f}", (v, y), va="center", ha="left", fontsize=6, xytext=(2, 0),
                            textcoords="offset points")
            if vals:
                ax.set_xlim(0, max(vals) * 1.18 or 1.0)
            else:
                ax.text(0.5, 0.5, "no rows", transform=ax.transAxes, ha="center")
        title = "Week 2: top operators by self time"
        fig.suptitle(title if not note else f"{title}\n{note}", fontsize=10)
        fig.subplots_adjust(left=0.36, right=0.97, top=1 - 0.7 / (2.6 * n + 0.8), bottom=0.45 / (2.6 * n + 0.8),
                            hspace=0.55)

    return _render(draw, (9, 2.6 * n + 0.8), text)
