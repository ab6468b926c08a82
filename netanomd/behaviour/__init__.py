"""Host behaviour detection: windows per host, named behaviours, incidents, plain reasons.

Modules, one job each:

* :mod:`~netanomd.behaviour.hll`: HyperLogLog distinct counts, vectorised;
* :mod:`~netanomd.behaviour.windows`: per-host behaviour over 1 min / 10 min / 1 h windows;
* :mod:`~netanomd.behaviour.detectors`: learned thresholds and named detections;
* :mod:`~netanomd.behaviour.incidents`: detections grouped into incidents with titles;
* :mod:`~netanomd.behaviour.reasons`: Zeek fields in plain language;
* :mod:`~netanomd.behaviour.context`: a flow alert's host context, as parts of its reason;
* :mod:`~netanomd.behaviour.pipeline`: flows -> incidents, the same in training and live;
* :mod:`~netanomd.behaviour.measure`: the measurement on the shared captures.
"""
