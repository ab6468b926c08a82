"""The wire contract for the btest stand-ins: ``netanomd/zeek/api.py`` of this checkout, loaded
by path (only the standard library is needed, so netanomd need not be installed where zkg runs
the suite). The stand-ins take every event name, argument position and Broker type from it
and restate nothing; ``tests/test_zeek_scripts.py`` in netanomd runs them against real Broker
and WebSocket peers that encode flows in ``api.zeek``'s order.
"""

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "netanomd" / "zeek" / "api.py"
_spec = importlib.util.spec_from_file_location("netanom_contract", _PATH)
if _spec is None or _spec.loader is None:
    sys.exit(f"cannot load the netanomd contract from {_PATH}")
api = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = api  # dataclasses look their module up
_spec.loader.exec_module(api)

#: What the stand-ins answer with: every verdict argument a flow does not provide.
FIXED = {"score": 0.9, "threshold": 0.6, "model": "btest", "reason": "btest says anomalous"}


def named(spec, args):
    """An event's arguments by their declared names."""
    if len(args) != len(spec.args):
        sys.exit(f"{spec.name}: expected {len(spec.args)} arguments, got {len(args)}")
    return dict(zip(spec.arg_names, args))  # noqa: B905 (Python < 3.10)


def verdict_values(flows, i, wrap=lambda zeek_type, value: value):
    """The ``NetAnom::verdict`` arguments, in declared order, for flow ``i`` of ``flows`` (a
    name -> column mapping of wire values): flow fields are echoed as they came, the rest
    are FIXED plus the version, each passed through ``wrap(zeek type, value)``."""
    out = []
    for name, typ in api.VERDICT.args:
        if name == "contract":
            out.append(wrap(typ, api.VERSION))
        elif name in FIXED:
            out.append(wrap(typ, FIXED[name]))
        else:
            out.append(flows[name][i])
    return out


def refuse(version, event):
    """Exit with the contract's message when ``version`` is not ours."""
    problem = api.version_problem(version, event)
    if problem:
        sys.exit(problem)
