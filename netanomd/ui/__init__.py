"""The analyst's page: incidents, hosts, the model, scoring a flow, the allowlist and feedback.

* :mod:`netanomd.ui.app`: the Starlette application and its pages (:func:`build_app`);
* :mod:`netanomd.ui.auth`: tokens and roles;
* :mod:`netanomd.ui.charts`: the charts, drawn on the server as SVG;
* :mod:`netanomd.ui.server`: serving it (uvicorn), on its own or beside the daemon.

Templates and the stylesheet ship in the package: nothing is fetched at run time.
"""
