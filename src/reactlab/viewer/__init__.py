"""``reactlab report RUN_DIR... --out report.html``: runs as one self-contained HTML page, built in
``render.py`` (data, tables, page), with charts from ``svg.py`` and the viewer script in ``assets/``."""

from reactlab.viewer.render import (
    CORRECT_AT,
    SCRIPT_SAFE,
    RunData,
    build_report,
    charts,
    gold_facts,
    load_run,
    payload,
    render,
    summary_table,
    type_table,
)

__all__ = ["CORRECT_AT", "SCRIPT_SAFE", "RunData", "build_report", "charts", "gold_facts", "load_run", "payload",
           "render", "summary_table", "type_table"]
