"""The HTML report of a folder of runs (``genlab report RUNS_DIR``): see :mod:`genlab.report.html`."""
from genlab.report.html import write_html_report

__all__ = ["write_html_report"]
