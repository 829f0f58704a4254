"""Figures: one toolkit of primitives (``figures``), per-run figure makers declared with
``register_figures`` (their modules listed in ``genlab.catalog.FIGURES``), sample writers."""
from genlab.viz.figures import heatmap, line_plot, save_image_grid, save_rows, scatter2d, scatter3d
from genlab.viz.report import make_figures, register_figures

__all__ = ["heatmap", "line_plot", "make_figures", "register_figures", "save_image_grid", "save_rows",
           "scatter2d", "scatter3d"]
