"""Production evaluation: outcomes of PQLs, follow-up SLA, the control group, drift, and the report.

Pure DataFrame logic lives in `cohorts`, `calibration`, `sla`, `control`, `uplift` and `drift`; every
database read is in `io`; `report` assembles them into one self-contained HTML page.
"""
