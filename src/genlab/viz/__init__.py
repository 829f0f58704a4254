"""Figures: one toolkit of primitives (``figures``) and per-run figure makers (``report``)."""
from .figures import heatmap, line_plot, save_image_grid, save_rows, scatter2d, scatter3d
from .report import FIGURE_MAKERS, make_figures, register_figures
from . import geometry as _geometry  # noqa: F401,E402  (3-D point-cloud figures)
from . import flows as _flows  # noqa: F401,E402  (density / transformation figures of flows)

__all__ = ["FIGURE_MAKERS", "heatmap", "line_plot", "make_figures", "register_figures", "save_image_grid",
           "save_rows", "scatter2d", "scatter3d"]
