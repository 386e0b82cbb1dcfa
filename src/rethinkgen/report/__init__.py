"""The report: the paper's figures and tables from a results store, beside the paper's numbers.

``build_report(store_path, out_dir) -> Path`` writes ``out_dir/index.html`` with Figures 1a-1c and 2
(PNG), Table 1, the corruption-level table, the kernel table (CSV and Markdown) and a provenance block.
"""

from rethinkgen.report.build import build_from_data, build_report

__all__ = ["build_report", "build_from_data"]
