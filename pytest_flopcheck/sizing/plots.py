"""PNG plots for reports and sweeps (matplotlib, Agg backend). Optional: without matplotlib
the callers produce their tables and say that plots were skipped."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_flopcheck.sizing.records import SizingReport
from pytest_flopcheck.sizing.render import percent

PALETTE = ("#3b6ea5", "#e07b39", "#4b9b62", "#b2443a", "#7d5ba6", "#8c7a5b")
LABELLED_POINTS = 12
"""A sweep plot of one line and at most this many points labels each point with its value."""


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float = 7.5, height: float = 3.6) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig: Any) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def report_plots(report: SizingReport) -> dict[str, str]:
    """Title -> base64 PNG for the report page: stage FLOPs, categories, time per GPU."""
    plots = {}
    fig, ax = _figure()
    running = [s for s in report.stages if s.runs_per_generation]  # stages this generation runs
    names = [s.name for s in running]
    # Floats for plotting only: exact counts can exceed what matplotlib's C longs hold.
    values = [float(s.per_generation.flops) for s in running]
    bars = ax.barh(names, values, color=PALETTE[: len(names)])
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per generation (log scale)")
    ax.set_title("FLOPs per stage, one generation")
    for bar, stage in zip(bars, running, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {percent(stage.flops_share)}",
            va="center",
            fontsize=8,
        )
    ax.invert_yaxis()
    plots["FLOPs per stage"] = base64.b64encode(_png(fig)).decode()

    fig, ax = _figure()
    categories = report.top_categories
    ax.barh([c.category for c in categories], [c.share * 100 for c in categories], color=PALETTE[0])
    ax.set_xlabel("share of end-to-end FLOPs (%)")
    ax.set_title("Top categories by FLOPs")
    ax.invert_yaxis()
    plots["Top categories"] = base64.b64encode(_png(fig)).decode()

    estimates = report.time.estimates
    if estimates:
        fig, ax = _figure(height=3.8)
        left = [0.0] * len(estimates)
        for i, name in enumerate(names):
            widths = [e.stage(name).per_generation_s for e in estimates]
            ax.barh(
                [e.gpu for e in estimates], widths, left=left, label=name, color=PALETTE[i % len(PALETTE)]
            )
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_xlabel(f"seconds per generation ({report.time.precision}, per-kernel time model)")
        ax.set_title("Estimated time per GPU")
        ax.legend(frameon=False, fontsize=8)
        ax.invert_yaxis()
        plots["Time per GPU"] = base64.b64encode(_png(fig)).decode()
    return plots


def _value(value: float) -> str:
    """A point's label: whole numbers from 100 up (``1,778``), three figures below (``87.6``)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _plain_ticks(axis: Any) -> None:
    """Tick labels as plain numbers (``200``, ``0.5``) instead of ``2×10^2``, on a log axis too."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:,.6g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def sweep_plot(
    knob: str,
    xs: Sequence[Any],
    series: Mapping[str, Sequence[float]],
    fixed: Mapping[str, Any],
    quantity: str = "FLOPs",
    unit: str = "FLOPs per generation",
    *,
    log_y: bool = True,
    counts: bool = False,
    limit: tuple[float, str] | None = None,
) -> bytes:
    """A quantity (FLOPs, seconds, bytes) against one knob: one line per series (log y unless
    ``log_y`` is off; a series with nothing above zero cannot be drawn on it and is left out of
    the legend too); a series named ``total`` is drawn dashed below the others. ``counts``: the
    knob is a count that doubles (GPUs), drawn on a log2 axis with a tick at each value;
    ``limit``: a horizontal line at a value, labelled (a GPU's memory)."""
    fig, ax = _figure()
    drawn = [float(y) for ys in series.values() for y in ys if not log_y or float(y) > 0]
    for i, (name, ys) in enumerate(series.items()):
        if log_y and not any(float(y) > 0 for y in ys):
            continue
        if name == "total":  # dashed and drawn below, so a dominant stage stays visible on top of it
            ax.plot(
                list(xs),
                [float(y) for y in ys],
                color="#222",
                linewidth=1.4,
                linestyle="--",
                marker="s",
                markersize=4,
                label=name,
                zorder=1,
            )
        else:
            ax.plot(
                list(xs),
                [float(y) for y in ys],
                color=PALETTE[i % len(PALETTE)],
                linewidth=2,
                marker="o",
                label=name,
                zorder=2,
            )
    lines = [ys for ys in series.values() if not log_y or any(float(y) > 0 for y in ys)]
    if len(lines) == 1 and len(xs) <= LABELLED_POINTS:  # one line of a few points: say each value
        for x, y in zip(xs, lines[0], strict=True):
            ax.annotate(
                _value(float(y)), (x, float(y)), textcoords="offset points", xytext=(0, 7),
                ha="center", fontsize=8, color="#333",
            )  # fmt: skip
    if limit is not None:
        ax.axhline(limit[0], color="#b2443a", linewidth=1, linestyle=":", label=limit[1], zorder=1)
    if counts:
        ax.set_xscale("log", base=2)
        ax.set_xticks([float(x) for x in xs])
        _plain_ticks(ax.xaxis)
        ax.minorticks_off()
    if log_y:
        ax.set_yscale("log")
        if drawn and max(drawn) < 100 * min(drawn):  # within two decades: the in-between ticks labelled
            _plain_ticks(ax.yaxis)
    else:
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.08)  # room for the points' labels
    ax.set_xlabel(knob)
    ax.set_ylabel(f"{unit} (log scale)" if log_y else unit)
    subtitle = ", ".join(f"{k}={v}" for k, v in fixed.items())
    ax.set_title(f"{quantity} vs {knob}" + (f"\n({subtitle})" if subtitle else ""), fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)
