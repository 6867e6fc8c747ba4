"""Matched comparisons are forest plots (a row per policy, its interval, its cache fraction written beside);
budget sweeps are score against budget, a line per policy."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from eval.plots import ForestRow, budget_sweep, forest, forest_axes  # noqa: E402


def _points(ax):
    """(x, y) of each errorbar's marker, in drawing order."""
    return [tuple(c.lines[0].get_xydata()[0]) for c in ax.containers]


def test_policies_at_one_cache_fraction_get_a_row_each():
    rows = [ForestRow("namm", 0.5, (0.4, 0.6), 0.45), ForestRow("full", 1.0, None, 1.0),
            ForestRow("h2o", 0.38, (0.3, 0.45), 0.45, budget=0.45), ForestRow("tova", 0.6, (0.5, 0.7), 0.5, budget=0.49)]
    fig, ax = plt.subplots()
    forest_axes(ax, rows, "normalised", reference=1.0)
    points = _points(ax)
    assert [x for x, _ in points] == [0.5, 1.0, 0.38, 0.6]  # the score is the x
    assert [y for _, y in points] == [3, 2, 1, 0]  # one row each, top to bottom in the given order
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tova", "h2o", "full", "namm"]
    texts = [t.get_text() for t in ax.texts]
    assert "cache 0.45" in texts and "cache 1.00" in texts
    assert "cache 0.50 (given 0.49)" in texts  # the budget only where it differs from what was kept
    namm = ax.containers[0]
    assert namm.has_xerr and not namm.has_yerr
    segment = namm.lines[2][0].get_segments()[0]
    assert [p[0] for p in segment] == pytest.approx([0.4, 0.6])  # the interval, horizontal
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] >= 1.0
    plt.close(fig)


def test_a_row_without_a_score_is_written_not_drawn(tmp_path):
    rows = [ForestRow("full", 80.0, None, 1.0), ForestRow("namm", None, None, 0.3)]
    fig, ax = plt.subplots()
    forest_axes(ax, rows, "accuracy")
    assert len(ax.containers) == 1 and "n/a" in [t.get_text() for t in ax.texts]
    plt.close(fig)
    forest(rows, "accuracy", "t", tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_budget_sweep_draws_a_line_per_policy_against_the_budget(tmp_path, monkeypatch):
    drawn = {}
    real = plt.subplots

    def keep(*args, **kwargs):
        fig, ax = real(*args, **kwargs)
        drawn["ax"] = ax
        return fig, ax

    monkeypatch.setattr(plt, "subplots", keep)
    monkeypatch.setattr(plt, "close", lambda fig: None)
    budget_sweep({"h2o": [(0.5, 95.0, (90.0, 98.0)), (0.25, 80.0, (72.0, 87.0))],
                  "tova": [(0.25, 69.0, None), (0.5, 74.0, None)]},
                 "M-Avg", "t", tmp_path / "s.png", full=87.5, points={"namm": (0.33, 48.8, (37.5, 60.0))})
    ax = drawn["ax"]
    lines = {c.get_label(): c.lines[0].get_xydata() for c in ax.containers}
    assert set(lines) == {"h2o", "tova", "namm (at its cache 0.33)"}
    h2o, tova = lines["h2o"], lines["tova"]
    assert list(h2o[:, 1]) == [80.0, 95.0] and list(tova[:, 1]) == [69.0, 74.0]  # sorted by budget
    assert h2o[0, 0] == pytest.approx(0.25, abs=0.02) and h2o[0, 0] != tova[0, 0]  # side by side, not stacked
    assert lines["namm (at its cache 0.33)"][0, 0] == 0.33
    assert any(line.get_label() == "full cache" and line.get_ydata()[0] == 87.5 for line in ax.lines)
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_the_transfer_figure_is_a_forest_per_evaluation(tmp_path, monkeypatch):
    """transfer.png used to put every policy of a matched panel at one x, so markers and intervals stacked."""
    from eval.transfer.report import Panel, Row, plot_panels

    captured = {}
    monkeypatch.setattr("eval.plots.save_figure", lambda fig, path, dpi=110: captured.setdefault("fig", fig))
    rows = [Row("namm", 1.0, 0.5, (0.4, 0.6), 0.45, 1.0), Row("full", 2.0, 1.0, None, 1.0, 1.0),
            Row("h2o", 0.8, 0.4, (0.3, 0.5), 0.45, 1.0, 0.45), Row("l2", 0.6, 0.3, (0.2, 0.4), 0.45, 1.0, 0.45)]
    plot_panels([Panel("a", "language", "s", rows, []), Panel("b", "control", "s", rows[:2], [])],
                tmp_path / "t.png", "title")
    first, second = captured["fig"].axes[:2]
    assert [p for p in _points(first)] == [(0.5, 3), (1.0, 2), (0.4, 1), (0.3, 0)]
    assert first.get_xlim() == second.get_xlim()  # one scale for every panel
    assert "cache 0.45" in [t.get_text() for t in first.texts]
