"""netanomd: a network anomaly detector for Zeek and Suricata.

The data path runs in one direction, each stage a small module with a narrow interface::

    sources  ->  flow records  ->  features  ->  detector  ->  decision  ->  sinks
    (sources/)   (flow.py)         (features/)   (detectors/)  (decision/)   (sinks/)

(``model/`` holds features + detector + threshold as one artifact, whose ``Model.run`` is the one
scoring path; ``daemon/`` wires sources and sinks around it.)

Contracts, stated once:

* A **source** yields :class:`netanomd.flow.FlowBatch` objects: an Arrow table with exactly
  :data:`netanomd.flow.FLOW_SCHEMA`. Every source (Zeek Broker/WebSocket, Zeek logs, Suricata
  EVE, CICFlowMeter CSV) produces the same columns; later stages never know where a flow came
  from except through the ``source`` column.
* **features** turn a batch into a ``float32`` matrix with named columns; the feature spec is
  fitted at training time and stored in the model artifact.
* A **detector** returns a score per row where **higher means more anomalous**. It never
  decides.
* **decision** compares scores with the model's threshold and explains the rows above it.
* A **sink** receives verdicts (alerts) and stores or forwards them; a failing sink never stops
  scoring.
"""

from __future__ import annotations

__version__ = "0.1.0"
