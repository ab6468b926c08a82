"""The analyst's page: a Starlette application over one alert database (and, for scoring and
model status, one model).

Owns the routes and what each page shows:

* ``/incidents``: newest first, filtered by severity, behaviour, host and time, with counts per
  hour; incidents an allowlist rule covers are hidden unless asked for; the list refreshes
  itself (``/api/changes`` polled, the list re-fetched when the database changed);
* ``/incident/{id}``: title, timeline of its flows, peers and ports, the evidence next to the
  training baseline, links to the Zeek uids, community ids and Kibana Discover; "mark benign"
  and "confirm" for an analyst;
* ``/host/{address}``: its incidents over time, its flow alerts per hour, its peers by first
  contact;
* ``/model``: the model's id, training, threshold rule, the stored alerts' scores against the
  training quantiles, alerts per hour;
* ``/score``: a flow from a form or pasted conn.log JSON lines, scored on the one scoring path
  (:func:`netanomd.daemon.score_api.score_json`) with the allowlist applied;
* ``/rules``: the allowlist (defaults switchable, config-file rules shown, analyst rules added and
  removed) and every analyst action;
* ``/metrics``: suppressed flow alerts and incidents by rule, Prometheus text.

Reading goes through :mod:`netanomd.sinks.sqlite` and :mod:`netanomd.store.read`; feedback
through :class:`netanomd.feedback.FeedbackStore`; who may do what is :mod:`netanomd.ui.auth`'s.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from netanomd.errors import InputError, NetanomError
from netanomd.feedback import FeedbackStore, Rule, RuleSet, Suppressor, rule_from_dict
from netanomd.feedback.store import incident_rule
from netanomd.sinks.sqlite import (
    IncidentQuery,
    StoredAlert,
    StoredIncident,
    query_incidents,
)
from netanomd.store import read
from netanomd.ui import charts
from netanomd.ui.auth import COOKIE, Access, Role

if TYPE_CHECKING:
    from netanomd.model import Model

STATIC = Path(__file__).parent / "static"
PAGE = 100  # incidents listed per page
SCAN = 1000  # newest incidents read per listing (those the allowlist covers are left out)


@dataclass
class UiSettings:
    """What the page serves and how (see :mod:`netanomd.commands.ui` for the options)."""

    db: Path
    model: Path | None = None
    access: Access = field(default_factory=Access)
    kibana: str | None = None  # Kibana's base URL, for Discover links
    config_rules: list[Rule] = field(default_factory=list)
    poll_seconds: float = 5.0
    #: The daemon's model in force (instead of ``model``, a file).
    live_model: Callable[[], Model] | None = None
    #: The daemon's allowlist hook: given the rules when they change; its counts are stored.
    suppressor: Suppressor | None = None
    #: Scores of a sample of the recent traffic, every flow (the daemon's drift monitor).
    recent_scores: Callable[[], np.ndarray] | None = None


def _when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ts is None:
        return "-"
    if ts < 1e9:  # some captures carry relative seconds
        return f"+{ts:.3f}s"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("netanomd.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    env.filters["q"] = lambda v: urllib.parse.quote(str(v), safe="")
    return env


class UiState:
    """The page's shared state: settings, the feedback store and the model (loaded once)."""

    def __init__(self, settings: UiSettings) -> None:
        self.settings = settings
        self.db = settings.db
        self.store = FeedbackStore(settings.db, config_rules=settings.config_rules)
        self.lock = threading.Lock()
        self.env = _templates()
        self._model: Model | None = None
        #: Why the model could not be loaded (None: loaded, or none given).
        self.model_error: str | None = None

    @property
    def model(self) -> Model | None:
        if self.settings.live_model is not None:
            return self.settings.live_model()
        if self._model is None and self.settings.model is not None and not self.model_error:
            from netanomd.model import Model

            try:
                self._model = Model.load(self.settings.model)
            except NetanomError as exc:
                self.model_error = str(exc)
        return self._model

    def rules(self) -> RuleSet:
        with self.lock:
            return self.store.rules()

    def rules_changed(self) -> None:
        """Give the daemon's hook the rules now in force."""
        if self.settings.suppressor is not None:
            self.settings.suppressor.use(self.rules())

    def suppressed(self) -> dict[tuple[str, str], int]:
        """Suppression counts by (rule, kind), the daemon's latest stored first."""
        with self.lock:
            if self.settings.suppressor is not None:
                self.store.add_suppressed(self.settings.suppressor.take_counts())
            return self.store.suppressed()

    def discover(self, field_name: str, value: str) -> str | None:
        """A Kibana Discover link searching ``field_name: value`` (None without Kibana)."""
        base = self.settings.kibana
        if not base:
            return None
        query = urllib.parse.quote(f'{field_name}:"{value}"', safe="")
        return (
            f"{base.rstrip('/')}/app/discover#/?_g=(time:(from:now-1y,to:now))"
            f"&_a=(query:(language:kuery,query:'{query}'))"
        )


def _role(request: Request) -> Role:
    role: Role = request.state.role
    return role


def _page(state: UiState, request: Request, name: str, **context: Any) -> HTMLResponse:
    html = state.env.get_template(name).render(
        role=_role(request),
        writable=state.settings.access.writable,
        poll=state.settings.poll_seconds,
        db=state.db,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html)


def _incident_query(params: Any) -> tuple[IncidentQuery, dict[str, str]]:
    """Filters from the query string (also returned as given, for the form)."""
    given = {
        k: str(params.get(k, "")).strip()
        for k in ("severity", "behaviour", "host", "since", "until")
    }
    query = IncidentQuery(
        min_severity=read.min_severity(given["severity"], "severity")
        if given["severity"]
        else None,
        behaviour=given["behaviour"] or None,
        host=given["host"] or None,
        since=read.parse_since(given["since"], "since") if given["since"] else None,
        until=read.parse_since(given["until"], "until") if given["until"] else None,
    )
    return query, given


def _covering(rules: RuleSet, inc: StoredIncident) -> str:
    rule = rules.incident_rule(
        time.time(), inc.host, inc.role, inc.peer, inc.port, inc.proto, inc.behaviour
    )
    return rule.name if rule is not None else ""


def _incident(state: UiState, incident_id: str) -> StoredIncident:
    return read.incident(state.db, incident_id)


def build_app(settings: UiSettings) -> Starlette:
    """The application (its state on ``app.state.ui``)."""
    state = UiState(settings)

    async def incidents(request: Request) -> Response:
        query, given = _incident_query(request.query_params)
        show_suppressed = request.query_params.get("suppressed") == "1"
        page = query_incidents(state.db, query, limit=SCAN)
        rules = state.rules()
        rows = []
        hidden = 0
        for inc in page.items:
            rule = _covering(rules, inc)
            if rule and not show_suppressed:
                hidden += 1
                continue
            rows.append((inc, rule))
        hours = read.hourly(state.db, "incidents", incidents=query)
        return _page(
            state,
            request,
            "incidents.html",
            rows=rows[:PAGE],
            total=page.total - hidden,
            hidden=hidden,
            given=given,
            show_suppressed=show_suppressed,
            qs=request.url.query,
            behaviours=read.behaviours(state.db),
            chart=charts.hourly_bars(
                [(b.start, b.count) for b in hours], "incidents per hour (first seen)"
            ),
        )

    async def changes(request: Request) -> Response:
        n, at, alerts = read.latest_change(state.db)
        with state.lock:
            latest = state.store.actions(limit=1)
        actions = latest[0].id if latest else 0
        return JSONResponse({"incidents": n, "updated": at, "alerts": alerts, "actions": actions})

    async def incident(request: Request) -> Response:
        inc = _incident(state, request.path_params["incident_id"])
        flows = read.incident_alerts(state.db, inc)
        rules = state.rules()
        now = time.time()
        shown = 500 if request.query_params.get("all") == "1" else 40
        flow_rows = [(a, _flow_rule(rules, now, a)) for a in flows[:shown]]
        evidence = _evidence_rows(inc, flows)
        with state.lock:
            verdict = state.store.verdict(inc.incident_id)
        would = incident_rule(inc, "preview", "", "", now).describe()
        threshold = flows[0].threshold if flows else None
        return _page(
            state,
            request,
            "incident.html",
            inc=inc,
            flows=flow_rows,
            flow_total=len(flows),
            covered=_covering(rules, inc),
            would=would,
            verdict=verdict,
            ports=Counter(f"{a.proto or '?'}/{a.resp_p}" for a in flows).most_common(20),
            timeline=charts.scatter_time(
                [(a.ts, a.score) for a in flows if a.ts is not None],
                "scores of the incident's flows over time",
                threshold=threshold,
            ),
            evidence=charts.compare_bars(evidence, "evidence next to the training baseline"),
            discover=state.discover,
            signatures=_signatures(flows),
        )

    async def verdict(request: Request) -> Response:
        role = _role(request)
        if not role.analyst:
            return PlainTextResponse("read-only: no analyst role configured", status_code=403)
        inc = _incident(state, request.path_params["incident_id"])
        form = await request.form()
        comment = str(form.get("comment", ""))[:500]
        with state.lock:
            if request.path_params["action"] == "benign":
                state.store.mark_benign(inc, role.name, comment)
            else:
                state.store.confirm(inc, role.name, comment)
        state.rules_changed()
        return RedirectResponse(f"/incident/{inc.incident_id}", status_code=303)

    async def host(request: Request) -> Response:
        address = request.path_params["address"]
        page = query_incidents(state.db, IncidentQuery(host=address), limit=None)
        hours = read.hourly(state.db, "alerts", host=address)
        spans = [
            (
                i.first_seen,
                i.last_seen,
                i.behaviour,
                f"{i.title} ({_when(i.first_seen)} to {_when(i.last_seen)})",
            )
            for i in page.items
        ]
        return _page(
            state,
            request,
            "host.html",
            address=address,
            incidents=page.items,
            behaviour=charts.timeline(spans, "the host's incidents over time"),
            alerts_chart=charts.hourly_bars(
                [(b.start, b.count) for b in hours], "flow alerts per hour"
            ),
            peers=read.host_peers(state.db, address),
        )

    async def model_page(request: Request) -> Response:
        model = state.model
        rng = read.score_range(state.db)
        hist = None
        info: dict[str, Any] = {}
        if model is not None:
            m = model.meta
            q = {k: float(v) for k, v in (m.get("training_scores") or {}).items()}
            markers = [(f"train p{float(k) * 100:g}", v) for k, v in sorted(q.items())]
            markers.append(("threshold", model.threshold))
            info = {
                "id": model.model_id,
                "created": m.get("created_at"),
                "detector": model.detector.kind,
                "features": len(model.feature_names),
                "threshold": model.threshold,
                "rule": json.dumps(m.get("threshold_rule")),
                "training": m.get("training", {}),
                "behaviour": m.get("behaviour"),
            }
        else:
            markers = []
        recent = state.settings.recent_scores() if state.settings.recent_scores else None
        recent_traffic = recent is not None and len(recent) > 0 and model is not None
        if recent is not None and recent_traffic:
            # every flow of the recent traffic against the training quantiles and threshold
            values = [*recent.tolist(), *(v for _, v in markers)]
            lo, hi = min(values), max(values)
            pad = (hi - lo) * 0.05 or 1e-3
            counts_np, edges_np = np.histogram(recent, bins=30, range=(lo - pad, hi + pad))
            hist = charts.histogram(
                edges_np.tolist(),
                counts_np.tolist(),
                markers,
                f"scores of recent traffic ({len(recent):,} flows sampled over the last day)",
            )
        elif rng is not None:  # the alerts' range, and the threshold: the tail they sit in
            lo = min(rng[0], model.threshold) if model is not None else rng[0]
            hi = max(rng[1], lo + 1e-3)
            pad = (hi - lo) * 0.05
            lo, hi = lo - pad, hi + pad
            bins = 30
            counts = read.score_histogram(state.db, lo, hi, bins)
            edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
            hist = charts.histogram(edges, counts, markers, "stored alert scores")
        hours = read.hourly(state.db, "alerts")
        suppressed = sorted(state.suppressed().items())
        return _page(
            state,
            request,
            "model.html",
            info=info,
            model_path=state.settings.model,
            model_error=state.model_error,
            hist=hist,
            recent_traffic=recent_traffic,
            rate=charts.hourly_bars([(b.start, b.count) for b in hours], "flow alerts per hour"),
            suppressed=suppressed,
        )

    async def score(request: Request) -> Response:
        results: list[dict[str, Any]] = []
        error = ""
        form: dict[str, str] = {}
        if request.method == "POST":
            data = await request.form()
            form = {k: str(v) for k, v in data.items()}
            try:
                results = await run_in_threadpool(_score, state, form)
            except (ValueError, TypeError, InputError) as exc:
                error = str(exc)
        return _page(
            state,
            request,
            "score.html",
            form=form,
            results=results,
            error=error,
            have_model=state.model is not None,
            model_error=state.model_error,
        )

    async def rules(request: Request) -> Response:
        rs = state.rules()
        suppressed = state.suppressed()
        with state.lock:
            actions = state.store.actions(limit=200)
        prefill = {
            k: request.query_params.get(k, "")
            for k in ("host", "peer", "port", "proto", "service", "behaviour", "name", "comment")
        }
        return _page(
            state,
            request,
            "rules.html",
            rules=rs.rules,
            actions=actions,
            suppressed=suppressed,
            prefill=prefill,
            now=time.time(),
        )

    async def rule_action(request: Request) -> Response:
        role = _role(request)
        if not role.analyst:
            return PlainTextResponse("read-only: no analyst role configured", status_code=403)
        form = {k: str(v) for k, v in (await request.form()).items()}
        op = request.path_params["op"]
        with state.lock:
            if op == "add":
                data = {k: v for k, v in form.items() if v and k != "expires_in"}
                hours = form.get("expires_in", "").strip()
                if hours:
                    try:
                        data["expires"] = str(time.time() + float(hours) * 3600)
                    except ValueError:
                        raise InputError(f"expires in {hours!r}: expected hours") from None
                state.store.add_rule(rule_from_dict(data, "new rule"), role.name)
            elif op == "remove":
                state.store.remove_rule(form.get("name", ""), role.name, form.get("comment", ""))
            elif op in ("default-on", "default-off"):
                state.store.set_default(form.get("name", ""), op == "default-on", role.name)
            else:
                return PlainTextResponse(f"unknown rule action {op!r}", status_code=404)
        state.rules_changed()
        return RedirectResponse("/rules", status_code=303)

    async def metrics(request: Request) -> Response:
        counts = state.suppressed()
        lines = [
            "# HELP netanomd_suppressed_total Flow alerts and incidents suppressed by rule.",
            "# TYPE netanomd_suppressed_total counter",
        ]
        for (rule, kind), n in sorted(counts.items()):
            lines.append(f'netanomd_suppressed_total{{rule="{rule}",kind="{kind}"}} {n}')
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def home(request: Request) -> Response:
        return RedirectResponse("/incidents", status_code=302)

    routes = [
        Route("/", home),
        Route("/incidents", incidents),
        Route("/api/changes", changes),
        Route("/incident/{incident_id}", incident),
        Route("/incident/{incident_id}/{action:str}", verdict, methods=["POST"]),
        Route("/host/{address:str}", host),
        Route("/model", model_page),
        Route("/score", score, methods=["GET", "POST"]),
        Route("/rules", rules),
        Route("/rules/{op:str}", rule_action, methods=["POST"]),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, access=settings.access)],
        exception_handlers={
            InputError: _error(state, 400),
            LookupError: _error(state, 404),
        },
    )
    app.state.ui = state
    return app


def _error(state: UiState, status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        html = state.env.get_template("error.html").render(
            message=str(exc).strip("'\""),
            status=status,
            role=getattr(request.state, "role", None),
            writable=state.settings.access.writable,
            path=request.url.path,
            db=state.db,
        )
        return HTMLResponse(html, status_code=status)

    return handler


class Guard(BaseHTTPMiddleware):
    """Refuses requests without a valid token (when one is needed) and sets ``request.state.role``;
    a ``?token=`` in the address becomes a session cookie and is dropped from the address."""

    def __init__(self, app: Any, access: Access) -> None:
        super().__init__(app)
        self.access = access

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        given = (
            (bearer.strip() if scheme.lower() == "bearer" else None)
            or request.query_params.get("token")
            or request.cookies.get(COOKIE)
        )
        role = self.access.role(given)
        if role is None:
            return PlainTextResponse(
                "401: missing or wrong token (open the page with ?token=... once, or send "
                "Authorization: Bearer ...)",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="netanomd-ui"'},
            )
        if "token" in request.query_params:
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urllib.parse.urlencode(rest) if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                request.query_params["token"],
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
        request.state.role = role
        return await call_next(request)


def _flow_rule(rules: RuleSet, now: float, a: StoredAlert) -> str:
    rule = rules.flow_rule(now, a.orig_h, a.resp_h, a.resp_p, a.proto, a.service)
    return rule.name if rule is not None else ""


def _evidence_rows(
    inc: StoredIncident, flows: list[StoredAlert]
) -> list[tuple[str, float, float, str]]:
    """The incident's measured value next to its learned limit, then the flows' strongest
    feature contributions (observed next to the training baseline), averaged per feature."""
    rows: list[tuple[str, float, float, str]] = []
    ev = inc.evidence
    if "value" in ev and "threshold" in ev:
        rows.append((f"{inc.behaviour} (measured)", ev["value"], ev["threshold"], "learned limit"))
    per: dict[str, list[tuple[float, float, str, float]]] = {}
    for a in flows:
        for c in a.explanation:
            if isinstance(c.get("observed"), int | float) and isinstance(
                c.get("baseline"), int | float
            ):
                per.setdefault(str(c.get("description") or c.get("feature")), []).append(
                    (
                        float(c["observed"]),
                        float(c["baseline"]),
                        str(c.get("baseline_name", "")),
                        float(c.get("weight", 0.0)),
                    )
                )
    ranked = sorted(per.items(), key=lambda kv: -sum(w for *_, w in kv[1]))
    for name, vals in ranked[:6]:
        obs = sum(v[0] for v in vals) / len(vals)
        base = sum(v[1] for v in vals) / len(vals)
        what = {
            "share": "share in training",
            "p1": "training 1st percentile",
            "p99": "training 99th percentile",
        }.get(vals[0][2], vals[0][2] or "training")
        rows.append((f"{name} ({len(vals)} flows)", obs, base, what))
    return rows


def _signatures(flows: list[StoredAlert]) -> list[str]:
    """Suricata's signatures that fired on the incident's flows (the sensor's own alerts,
    attached by flow_id), most often first: ``ET SCAN … (sid 2001219, severity 2)``."""
    seen: Counter[str] = Counter()
    for a in flows:
        for sig in a.signatures or ():
            seen[f"{sig['signature']} (sid {sig['signature_id']}, severity {sig['severity']})"] += 1
    return [name for name, _ in seen.most_common()]


SCORE_FIELDS = (
    "orig_h",
    "orig_p",
    "resp_h",
    "resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "history",
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
)


def _score(state: UiState, form: dict[str, str]) -> list[dict[str, Any]]:
    """Score what the form holds: pasted conn.log JSON lines, or the single-flow fields."""
    from netanomd.daemon.score_api import parse_body, score_json
    from netanomd.flow import FLOW_SCHEMA

    model = state.model
    if model is None:
        raise InputError(state.model_error or "no model: start the page with --model PATH")
    pasted = form.get("lines", "").strip()
    if pasted:
        payload = parse_body(pasted.encode())
    else:
        import pyarrow as pa

        flow: dict[str, Any] = {}
        for name in SCORE_FIELDS:
            text = form.get(name, "").strip()
            if not text:
                continue
            t = FLOW_SCHEMA.field(name).type
            try:
                flow[name] = (
                    int(text)
                    if pa.types.is_integer(t)
                    else float(text)
                    if pa.types.is_floating(t)
                    else text
                )
            except ValueError:
                raise InputError(f"{name}: {text!r} is not a number") from None
        payload = flow
    suppress = Suppressor(state.rules())
    results = score_json(model, None, payload, max_rows=1000, suppress=suppress)
    with state.lock:
        state.store.add_suppressed(suppress.take_counts())
    return results
