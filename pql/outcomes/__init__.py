"""What happened to the PQLs: conversions by cohort, follow-up SLA, uplift against the control group, report.

Pure DataFrame logic lives in `cohorts`, `calibration`, `sla` and `uplift`; every database read is in `io`;
`evaluation` joins them for a period and `report` renders one self-contained HTML page.
"""
