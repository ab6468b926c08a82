"""Anomalies in metrics: a host's or container's CPU, memory, network and the sensor's health.

The telemetry package reads time series (from a Prometheus server's HTTP API, or a CSV file of
the first seed's shape), turns them into one feature row per (instance, step), scores the rows
with the detectors every netanomd model uses (Isolation Forest by default) fitted on a baseline
period, compares each series with its own robust baseline (median and MAD, per hour of day when
the baseline is long enough) to say in plain words what is unusual, and groups anomalous steps
into incidents the existing sinks store.

Modules, one job each: :mod:`~netanomd.telemetry.series` (which series, and the series file),
:mod:`~netanomd.telemetry.prometheus` (the ``query_range`` client),
:mod:`~netanomd.telemetry.csvfile` (the CSV reader), :mod:`~netanomd.telemetry.rows` (samples
to feature rows), :mod:`~netanomd.telemetry.baseline` (per-series median and MAD, and the
reason), :mod:`~netanomd.telemetry.scoring` (fit on the baseline, score the rest) and
:mod:`~netanomd.telemetry.incidents` (anomalous steps to incidents).
"""
