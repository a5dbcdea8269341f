"""The drift report: a JSON document of thresholds, statistics and verdicts, and an HTML page of it.

Reference is the training data; current is recent serving inputs (from the prediction log lines) plus
newly labelled rows. The features compared are the contract's. Only histograms go into the report, never
raw rows, so its size does not grow with the traffic and no request's values are copied into it.
"""
from __future__ import annotations

import html
import math
from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from retrain_job.drift.attribution import prediction_drift
from retrain_job.drift.logged import as_logged, unjudged
from retrain_job.drift.stats import DriftThresholds, FeatureDrift, categorical_drift, numeric_drift, share_drifted
from shared.contract import FeatureContract
from shared.spec import ModelSpec

SCHEMA_VERSION = 2
MISSING = "(missing)"


def _categories(series: pd.Series, canonical: dict[str, str]) -> list[str]:
    """Each value's category in the contract's spelling (MISSING for None or NaN): each distinct value resolved once,
    since a reference holds a million rows of a handful of values."""
    codes, distinct = pd.factorize(series, use_na_sentinel=True)
    names = [MISSING if v is None or (isinstance(v, float) and np.isnan(v))
             else canonical.get(str(v).strip().lower(), str(v).strip()) for v in distinct]
    return np.array([*names, MISSING], dtype=object)[codes].tolist()  # code -1 (missing): the last


def _numbers(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def build_report(spec: ModelSpec, contract: FeatureContract, reference: pd.DataFrame, serving: pd.DataFrame,
                 labelled: pd.DataFrame, *, thresholds: DriftThresholds, window: dict,
                 reference_predictions: list | None = None, attribution: dict | None = None,
                 segments: bool = True, hash_key: bytes | None = None) -> dict:
    """Compare reference with current (serving + labelled) feature by feature, and the predictions' distribution.

    A numeric feature with fewer than `thresholds.min_rows` current values (an optional input most requests
    leave out) is listed as skipped rather than judged. Prediction drift compares the served answers with
    `reference_predictions` (the serving version's answers on its holdout) or, without them, with the
    training target. `attribution` (`retrain_job.drift.attribution.attribution_drift`) is reported as given.
    With `segments`, the same report (features and predictions) per value of each of the spec's segment fields.
    Served rows are compared as logged: the reference and the labelled rows are bucketed and hashed (with
    `hash_key`) as the spec's log policies say (retrain_job/drift/logged.py); a feature that cannot be is skipped.
    """
    reference, labelled = as_logged(spec, reference, hash_key), as_logged(spec, labelled, hash_key)
    return _report(spec, contract, reference, serving, labelled, thresholds=thresholds, window=window,
                   reference_predictions=reference_predictions, attribution=attribution, segments=segments,
                   unjudged=unjudged(spec, hash_key))


def _report(spec: ModelSpec, contract: FeatureContract, reference: pd.DataFrame, serving: pd.DataFrame,
            labelled: pd.DataFrame, *, thresholds: DriftThresholds, window: dict, reference_predictions: list | None,
            attribution: dict | None, segments: bool, unjudged: dict[str, str]) -> dict:
    """`build_report` on frames holding values as logged; `unjudged`: the features skipped, with the reason."""
    t = thresholds
    names = contract.field_names
    current = pd.concat([serving.reindex(columns=names), labelled.reindex(columns=names)], ignore_index=True)
    report = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"name": spec.name, "title": spec.title, "task": spec.task, "target": spec.target.name},
        "thresholds": asdict(t),
        "reference": {"rows": int(len(reference)), "source": "training data"},
        "current": {"rows": int(len(current)), "serving_rows": int(len(serving)),
                    "labelled_rows": int(len(labelled)), "window": window},
        "features": [],
        "skipped_features": [],
        "drifted_features": [],
        "share_drifted": 0.0,
        "prediction_drift": None,
        "attribution_drift": attribution,
        "segments": [],
    }
    if len(current) < t.min_rows:
        report["status"] = "not_enough_data"
        report["message"] = f"{len(current)} current rows; at least {t.min_rows} are needed for a verdict"
        return report
    features: list[FeatureDrift] = []
    report["skipped_features"] = [{"feature": name, "reason": reason} for name, reason in unjudged.items()
                                  if name in names]
    for f in contract.numeric:
        if f.name in unjudged:
            continue
        ref, cur = _numbers(reference[f.name]), _numbers(current[f.name])
        given = int(np.isfinite(cur).sum())
        if given < t.min_rows:
            report["skipped_features"].append({"feature": f.name, "reason": f"{given} current values; at least "
                                                                            f"{t.min_rows} are needed"})
            continue
        features.append(numeric_drift(f.name, ref, cur, t))
    for c in contract.categorical:
        if c.name in unjudged:
            continue
        canonical = {str(v).strip().lower(): str(v) for v in reference[c.name].dropna().unique()}
        features.append(categorical_drift(c.name, _categories(reference[c.name], canonical),
                                          _categories(current[c.name], canonical), t))
    report["features"] = [f.to_dict() for f in features]
    report["drifted_features"] = [f.feature for f in features if f.drifted]
    report["share_drifted"] = share_drifted(features)
    report["status"] = "drift" if report["share_drifted"] >= t.share else "no_drift"
    if "predicted" in serving and len(serving) >= t.min_rows:
        name = f"predicted_{spec.target.name}"
        if reference_predictions is not None:
            against, source = list(reference_predictions), "the serving version's answers on its holdout"
        elif spec.target.name in reference:
            against, source = reference[spec.target.name].tolist(), "the training target"
        else:
            against, source = None, None
        if against:
            mix = prediction_drift(name, against, serving["predicted"].tolist(), spec.is_classifier, t)
            report["prediction_drift"] = {**mix.to_dict(), "reference": source}
    if segments:
        report["segments"] = [part for name in spec.segments for part in
                              _segment_reports(spec, contract, reference, serving, labelled, t=t, name=name,
                                               unjudged=unjudged)]
    return report


SEGMENT_VALUES = 10  # values of a segment field reported, the most served first (a bounded metric label too)


def _segment_reports(spec: ModelSpec, contract: FeatureContract, reference: pd.DataFrame, serving: pd.DataFrame,
                     labelled: pd.DataFrame, *, t: DriftThresholds, name: str,
                     unjudged: dict[str, str]) -> list[dict]:
    """The report's verdicts restricted to each of the most served values of one segment field."""
    if name not in serving or name not in reference:
        return []
    out = []
    for value, served in serving[name].dropna().astype(str).value_counts().head(SEGMENT_VALUES).items():
        part = _report(spec, contract, reference[reference[name].astype(str) == value],
                       serving[serving[name].astype(str) == value],
                       labelled[labelled[name].astype(str) == value] if name in labelled else labelled.iloc[:0],
                       thresholds=t, window={}, reference_predictions=None, attribution=None, segments=False,
                       unjudged=unjudged)
        out.append({"field": name, "value": value, "serving_rows": int(served),
                    "reference_rows": part["reference"]["rows"], "status": part["status"],
                    "share_drifted": part["share_drifted"], "drifted_features": part["drifted_features"],
                    "prediction_drift": part["prediction_drift"]})
    return out


# ---- HTML ---------------------------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1f2933;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}.sub{color:#52606d;margin:0 0 18px}
.verdict{border-radius:10px;padding:16px 20px;margin:0 0 20px;font-size:18px}
.drift{background:#fde8e8;border:1px solid #f5a3a3}.no_drift{background:#e3f9e5;border:1px solid #91d8a0}
.not_enough_data,.feature_drift{background:#fff8e1;border:1px solid #f0d27a}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:20px}
.card{background:#f5f7fa;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;margin-bottom:24px}th,td{text-align:left;padding:6px 8px;
border-bottom:1px solid #e4e7eb}th{background:#f5f7fa}
.bad{color:#c81e1e;font-weight:600}.ok{color:#207a3c}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px}
.panel{border:1px solid #e4e7eb;border-radius:8px;padding:10px}.panel h3{margin:0 0 6px;font-size:15px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""
_REF, _CUR = "#9aa5b1", "#f0831e"


def _bars(labels: list[str], reference: list[float], current: list[float]) -> str:
    """A grouped bar chart as inline SVG (no scripts, no external assets)."""
    width, height, pad = 340, 150, 22
    n = max(len(labels), 1)
    top = max([*reference, *current, 0.01])
    slot = (width - 10) / n
    parts = [f'<svg viewBox="0 0 {width} {height + pad}" width="100%" role="img">']
    for i, (label, r, c) in enumerate(zip(labels, reference, current)):
        x = 5 + i * slot
        for j, (value, colour) in enumerate(((r, _REF), (c, _CUR))):
            h = value / top * (height - 10)
            parts.append(f'<rect x="{x + j * slot / 2 + 1:.1f}" y="{height - h:.1f}" width="{slot / 2 - 2:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{html.escape(label)}: {value:.1%}</title></rect>')
        if n <= 6 or i % 2 == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height + 15}" font-size="10" text-anchor="middle">'
                         f'{html.escape(label[:10])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _panel(f: dict) -> str:
    hist = f["histogram"]
    if f["kind"] == "numeric":
        edges = hist["edges"]
        labels = [f"{edges[i]:.4g}" for i in range(len(edges) - 1)]
    else:
        labels = hist["categories"]
    verdict = '<span class="bad">drift</span>' if f["drifted"] else '<span class="ok">stable</span>'
    return (f'<div class="panel"><h3>{html.escape(f["feature"])} — {verdict}</h3>'
            f'{_bars(labels, hist["reference"], hist["current"])}</div>')


def _p(value: float | None) -> str:
    if value is None:
        return ""
    return "< 1e-6" if value < 1e-6 else f"{value:.4g}"


def render_html(report: dict) -> str:
    """A self-contained page: the verdict on top, the per-feature table, then histograms."""
    status = report["status"]
    n_drifted, n_features = len(report["drifted_features"]), len(report["features"])
    title = {"drift": "Data drift detected", "no_drift": "No data drift",
             "not_enough_data": "Not enough data for a verdict"}[status]
    if status == "no_drift" and n_drifted:
        status = "feature_drift"  # page style only: some features moved, below the data-set threshold
        title = f"Drift in {n_drifted} of {n_features} features, below the data-set threshold"
    rows = "".join(
        f"<tr><td>{html.escape(f['feature'])}</td><td>{f['kind']}</td><td>{f['method']}</td>"
        f"<td>{f['statistic']:.4f}</td><td>{_p(f['p_value'])}</td><td>{f['psi']:.3f}</td>"
        f"<td class=\"{'bad' if f['drifted'] else 'ok'}\">{'drift' if f['drifted'] else 'stable'}</td></tr>"
        for f in report["features"])
    mix = report.get("prediction_drift")
    model = report["model"]
    mix_html = ""
    if mix:
        what = "mix" if mix["kind"] == "categorical" else "distribution"
        mix_html = (f"<h2>Predicted {html.escape(model['target'])} {what} (reference: training targets)</h2>"
                    f"<div class=\"grid\">{_panel(mix)}</div>"
                    f"<p>{mix['method']} statistic {mix['statistic']:.4f}, p-value {_p(mix['p_value']) or 'n/a'}</p>")
    cur = report["current"]
    cards = "".join(f'<div class="card">{label}<b>{value}</b></div>' for label, value in (
        ("share of features drifted", f"{report['share_drifted']:.0%}"),
        ("reference rows", report["reference"]["rows"]), ("serving rows", cur["serving_rows"]),
        ("labelled rows", cur["labelled_rows"]), ("threshold (share)", f"{report['thresholds']['share']:.0%}")))
    drifted = ", ".join(report["drifted_features"]) or "none"
    message = html.escape(report.get("message", f"Drifted features: {drifted}."))
    title_model = html.escape(model["title"])
    skipped = "".join(f"<li>{html.escape(f['feature'])}: {html.escape(f['reason'])}</li>"
                      for f in report.get("skipped_features", []))
    skipped_html = f"<p>Not judged:</p><ul>{skipped}</ul>" if skipped else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title_model} — drift report</title>
<style>{_STYLE}</style></head><body>
<h1>{title_model} — data drift report</h1>
<p class="sub">Model <b>{html.escape(model['name'])}</b> ({html.escape(model['task'])}).</p>
<p class="sub">Generated {html.escape(report['generated_at'])}. Reference: training data.
Current: serving inputs {html.escape(str(cur['window'].get('from', '')))} to
{html.escape(str(cur['window'].get('to', '')))} plus new labelled rows.</p>
<div class="verdict {status}"><b>{title}.</b> {message}</div>
<div class="cards">{cards}</div>
<h2>Per feature</h2>
<table><tr><th>feature</th><th>type</th><th>test</th><th>statistic</th><th>p-value</th><th>PSI</th><th>verdict</th></tr>
{rows}</table>
{skipped_html}
<p class="legend">Histograms: <span style="background:{_REF}"></span>reference (training)
<span style="background:{_CUR}"></span>current</p>
<div class="grid">{''.join(_panel(f) for f in report['features'])}</div>
{mix_html}
{_attribution_and_segments_html(report)}
</body></html>"""


# ---- the monitor's report (retrain_job/monitor/run.py) ------------------------------------------------------

_MONITOR_STYLE = _STYLE + """
.degraded{background:#fde8e8;border:1px solid #f5a3a3}.ok_verdict{background:#e3f9e5;border:1px solid #91d8a0}
.no_verdict{background:#fff8e1;border:1px solid #f0d27a}.version{border:1px solid #e4e7eb;border-radius:10px;
padding:4px 16px 8px;margin:0 0 18px}.version h2{font-size:18px}.muted{color:#52606d}
.badge{border-radius:6px;padding:2px 8px;font-size:13px;margin-left:8px}
"""
_VERDICTS = {"ok": ("ok_verdict", "ok"), "degraded": ("degraded", "degraded"), None: ("no_verdict", "no verdict")}
_CANARY_STYLE = {"rollback": "drift", "promote": "no_drift", "undecided": "not_enough_data", "none": "not_enough_data"}
_CI, _CBPE, _EXPECTED = "#f0831e", "#9aa5b1", "#1f2933"
# the rows of a version's table: a classifier's (a binary one's with its own after them) or a regressor's
_CLASSIFIER_ROWS = ("accuracy", "macro_f1", "log_loss")
_BINARY_ROWS = (*_CLASSIFIER_ROWS, "roc_auc", "pr_auc", "brier", "precision", "recall", "f1")
_REGRESSOR_ROWS = ("rmse", "mae", "coverage")
_SHARES = ("accuracy", "coverage", "roc_auc", "pr_auc", "precision", "recall", "f1")  # drawn on a 0..1 bar
_ROW_NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC (average precision)", "brier": "Brier score",
              "precision": "precision at the threshold", "recall": "recall at the threshold",
              "f1": "F1 at the threshold"}


def _number(value: float | None, digits: str = ".4g") -> str:
    return "" if value is None else format(value, digits)


def _interval_bar(realised: dict | None, estimated: dict | None, expected: float | None) -> str:
    """A share's scale (from a tenth below the lowest value shown, to 1) with the realised 95% interval (orange),
    CBPE's range (grey) and the promised value (the tick)."""
    width, height, pad = 240, 30, 22
    shown = [v for m in (realised, estimated) if m for v in (m.get("low"), m.get("value")) if v is not None]
    shown += [expected] if expected is not None else []
    lo = min(0.9, math.floor(min(shown, default=0.0) * 10) / 10)

    def x(v: float) -> float:
        return pad + (max(lo, min(1.0, v)) - lo) / (1.0 - lo) * (width - 2 * pad)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             f'<line x1="{pad}" y1="20" x2="{width - pad}" y2="20" stroke="#cbd2d9"/>',
             f'<text x="{pad - 3}" y="24" font-size="9" text-anchor="end">{lo:g}</text>',
             f'<text x="{width - pad + 3}" y="24" font-size="9">1</text>']
    for metric, colour, y in ((estimated, _CBPE, 4), (realised, _CI, 11)):
        if metric and metric.get("value") is not None and metric.get("low") is not None:
            left, span = x(metric["low"]), max(1.0, x(metric["high"]) - x(metric["low"]))
            parts.append(f'<rect x="{left:.1f}" y="{y}" width="{span:.1f}" height="6" fill="{colour}">'
                         f'<title>{metric["method"]}: {metric["low"]:.4g} to {metric["high"]:.4g}</title></rect>'
                         f'<circle cx="{x(metric["value"]):.1f}" cy="{y + 3}" r="3" fill="{_EXPECTED}"/>')
    if expected is not None:
        parts.append(f'<line x1="{x(expected):.1f}" y1="2" x2="{x(expected):.1f}" y2="24" stroke="{_EXPECTED}" '
                     f'stroke-width="2"><title>promised (holdout): {expected:.4g}</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def _when(iso: str) -> str:
    """An ISO time to the minute, in UTC."""
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def _metric_cell(metric: dict | None) -> str:
    if not metric or metric.get("value") is None:
        return '<td class="muted">not measured</td>'
    if metric.get("low") is None:
        interval = f' <span class="muted">(n={metric["n"]})</span>'
    else:
        interval = (f' <span class="muted">(95% {_number(metric["low"])} to {_number(metric["high"])}, '
                    f'n={metric["n"]})</span>')
    return f"<td><b>{_number(metric['value'])}</b>{interval}</td>"


def _version_section(v: dict, task: str) -> str:
    style, word = _VERDICTS.get(v["verdict"], _VERDICTS[None])
    expected = v.get("expected") or {}
    binary = "positive" in v  # a binary classifier's version
    names = _BINARY_ROWS if binary else _CLASSIFIER_ROWS if task == "classifier" else _REGRESSOR_ROWS
    rows = []
    for name in names:
        metric = v["metrics"].get(name)
        estimate = v.get("estimated_accuracy") if name == "accuracy" else None
        promised = expected.get(name)
        bar = ""
        if name in _SHARES:
            bar = _interval_bar(metric, estimate, promised if isinstance(promised, int | float) else None)
        estimate_cell = _metric_cell(estimate) if name == "accuracy" else "<td></td>"
        rows.append(f"<tr><td>{html.escape(_ROW_NAMES.get(name, name))}</td>{_metric_cell(metric)}{estimate_cell}"
                    f"<td>{_number(promised) if isinstance(promised, int | float) else ''}</td><td>{bar}</td></tr>")
    extras = []
    if binary:  # precision, recall and F1 are at the version's threshold; the holdout's was measured at its own
        promised = expected.get("threshold")
        other = isinstance(promised, int | float) and promised != v["threshold"]
        extras.append(f"positive class {html.escape(str(v['positive']))}; decisions: "
                      f"{html.escape(v.get('threshold_note') or _number(v['threshold']))}"
                      + (f"; the holdout's at threshold {_number(promised)}" if other else ""))
    if v.get("expected_accuracy_labelled"):
        extras.append(f"accuracy its probabilities expect on the labelled rows: "
                      f"{_number(v['expected_accuracy_labelled']['value'])}")
    if v.get("calibration_error") is not None:
        extras.append(f"top-label calibration error (ECE) of the labelled rows: {_number(v['calibration_error'])}")
    mix = expected.get("regime_mix")
    if mix:
        extras.append("promise weighted by the labelled rows' regimes: " +
                      ", ".join(f"{html.escape(k)} {s:.0%}" for k, s in mix.items()))
    extras.append(f"promise: {html.escape(v.get('expected_note', ''))}")
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in v["reasons"])
    estimated_head = "estimated (CBPE, all predictions)" if task == "classifier" else ""
    return f"""<div class="version"><h2>{html.escape(v['model_version'])}
<span class="muted">({html.escape(v['role'])})</span><span class="badge {style}">{word}</span></h2>
<p>{v['labels']} labelled of {v['predictions']} predictions in the window.</p>
<table><tr><th>metric</th><th>realised (live labels)</th><th>{estimated_head}</th><th>promised (holdout)</th>
<th>95% intervals</th></tr>{''.join(rows)}</table>
<ul>{reasons}</ul><p class="muted">{'<br>'.join(extras)}</p></div>"""


def render_monitor_html(report: dict) -> str:
    """The monitor's report as a self-contained page: the canary decision, a section per version, the feedback."""
    title = html.escape(report["title"])
    window, feedback, canary = report["window"], report["feedback"], report["canary"]
    cards = "".join(f'<div class="card">{label}<b>{value}</b></div>' for label, value in (
        ("feedback items", feedback["items"]), ("joined", feedback["joined"]),
        ("unknown ids", feedback["unknown_ids"]), ("duplicates", feedback["duplicates"]),
        ("late", feedback["late"]), ("invalid truths", feedback["invalid_truths"]),
        ("malformed", feedback["malformed"]), ("minimum labels", report["min_labels"])))
    if canary["decision"] == "none":
        canary_html = '<div class="verdict not_enough_data"><b>No canary</b> in the serving pointer.</div>'
    else:
        evidence = "".join(f"<li>{html.escape(line)}</li>" for line in canary["evidence"].split("; "))
        labels = canary["labels"]
        canary_html = (f'<div class="verdict {_CANARY_STYLE.get(canary["decision"], "not_enough_data")}">'
                       f'<b>Canary {html.escape(canary["canary"])} ({canary["percent"]:g}%): '
                       f'{html.escape(canary["decision"])}</b>, {html.escape(canary["action"])}. Judged on live '
                       f'labels: canary {labels.get("canary", 0)}, stable {labels.get("stable", 0)} '
                       f'(at least {labels.get("min_labels", report["min_labels"])} each).<ul>{evidence}</ul></div>')
    classifier = report["task"] == "classifier"
    kind = report["task"] + (f", binary: positive class {report['positive']}" if report.get("positive") else "")
    if classifier:
        guard_head = (f"<th>confident predictions (p &ge; {report['confidence']:g})</th><th>contradicted</th>"
                      f"<th>share</th>")
        guard_cells = [f"<td>{g['confident']}</td><td>{g['confident_disagreements']}</td>"
                       f"<td>{_number(g['confident_disagreement_share'], '.1%')}</td>" for g in report["guards"]]
    else:
        guard_head = "<th>truths outside the interval</th>"
        guard_cells = [f"<td>{g['outside_interval']}</td>" for g in report["guards"]]
    guards = "".join(f"<tr><td>{html.escape(g['source'])}</td><td>{g['items']}</td><td>{g['joined']}</td>{cells}</tr>"
                     for g, cells in zip(report["guards"], guard_cells))
    cbpe_legend = f' <span style="background:{_CBPE}"></span>CBPE range' if classifier else ""
    versions = "".join(_version_section(v, report["task"]) for v in report["versions"]) or \
        "<p>No predictions of this model in the window.</p>"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title} — live quality</title>
<style>{_MONITOR_STYLE}</style></head><body>
<h1>{title} — live quality</h1>
<p class="sub">Model <b>{html.escape(report['model'])}</b> ({html.escape(kind)}). Generated
{html.escape(_when(report['generated_at']))}. Feedback from {html.escape(_when(window['feedback_from']))} to
{html.escape(_when(window['to']))}, joined to predictions served since
{html.escape(_when(window['predictions_from']))}.</p>
{canary_html}
{_shadow_html(report.get("shadow"))}
<div class="cards">{cards}</div>
<p class="legend">Interval bars: <span style="background:{_CI}"></span>realised 95% interval{cbpe_legend};
the tick: what the version promised.</p>
{versions}
<h2>Feedback sources</h2>
<table><tr><th>source</th><th>items</th><th>joined (its truth counted)</th>{guard_head}</tr>{guards}</table>
{_segments_html(report.get("segments") or [], classifier)}
{_drift_html(report.get("drift"))}
</body></html>"""


_SHADOW_STYLE = {"better": "no_drift", "not-worse": "no_drift", "worse": "drift", "undecided": "not_enough_data"}


def _interval_text(m: dict | None, digits: str = ".4g") -> str:
    if not m or m.get("value") is None:
        return "not measured"
    return f"{m['value']:{digits}} (95% {m['low']:{digits}} to {m['high']:{digits}}, n={m['n']})"


def _shadow_html(shadow: dict | None) -> str:
    """The pointer's shadow beside stable on the same requests: agreement, paired quality difference, verdict."""
    if not shadow or shadow.get("version") is None:
        return ""
    agreement, quality, drift = shadow.get("agreement"), shadow.get("quality"), shadow.get("prediction_drift")
    lines = [f"agreement with stable ({html.escape(agreement['metric'].replace('_', ' '))}): "
             f"{_interval_text(agreement)}" if agreement else "no request scored by both yet"]
    if quality:
        if quality["metric"] == "accuracy":
            lines.append(f"accuracy on {quality['labelled']} labelled requests: shadow {_number(quality['shadow'])}, "
                         f"stable {_number(quality['answered'])}")
        else:
            lines.append(f"RMSE on {quality['labelled']} labelled requests: shadow {_number(quality['shadow_rmse'])}, "
                         f"stable {_number(quality['answered_rmse'])}; shadow interval coverage "
                         f"{_number(quality['shadow_coverage'], '.1%')}")
        lines.append(f"{html.escape(quality['metric'])} difference, shadow minus stable: "
                     f"{_interval_text(quality['difference'])}")
    if drift:
        lines.append(f"drift of its answers ({html.escape(drift['method'])}): {drift['statistic']:.4g}, "
                     f"{'drift' if drift['drifted'] else 'no drift'}")
    items = "".join(f"<li>{line}</li>" for line in lines)
    return (f'<div class="verdict {_SHADOW_STYLE.get(shadow["verdict"], "not_enough_data")}"><b>Shadow '
            f'{html.escape(shadow["version"])} ({shadow.get("percent") or 0:g}% of requests): '
            f'{html.escape(shadow["verdict"])}</b>. {html.escape(shadow["evidence"])}<ul>{items}</ul></div>')


def _segments_html(segments: list[dict], classifier: bool) -> str:
    """Live quality per segment value and version: labels, the main realised metric, CBPE, verdict."""
    if not segments:
        return ""
    main = "accuracy" if classifier else "rmse"
    rows = []
    for part in segments:
        for v in part["versions"]:
            estimate = v.get("estimated_accuracy") or {}
            rows.append(f"<tr><td>{html.escape(part['segment'])}</td><td>{html.escape(v['model_version'])}</td>"
                        f"<td>{html.escape(v['role'])}</td><td>{v['predictions']}</td><td>{v['labels']}</td>"
                        f"<td>{_metric_cell(v['metrics'].get(main))}</td>"
                        + (f"<td>{_metric_cell(estimate)}</td>" if classifier else
                           f"<td>{_metric_cell(v['metrics'].get('coverage'))}</td>")
                        + f"<td>{html.escape(v['verdict'] or 'not enough labels')}</td></tr>")
    second = "CBPE accuracy" if classifier else "coverage"
    return (f"<h2>Segments</h2><table><tr><th>segment</th><th>version</th><th>role</th><th>predictions</th>"
            f"<th>labels</th><th>{main}</th><th>{second}</th><th>verdict</th></tr>{''.join(rows)}</table>")


def _drift_html(drift: dict | None) -> str:
    """The stable version's drift against its training reference: features, predictions, attributions, segments."""
    if not drift:
        return ""
    if drift.get("status") == "no_reference" or "features" not in drift:
        return f"<h2>Drift</h2><p>{html.escape(drift.get('message', 'no drift verdict'))}</p>"
    current = drift["current"]
    window = current.get("window") or {}
    head = (f"<h2>Drift of {html.escape(str(drift['version']))}</h2><p>{drift['share_drifted']:.0%} of features "
            f"drifted ({html.escape(drift['status'])}) on {window.get('sampled_rows', current['rows'])} sampled of "
            f"{window.get('served_rows', current['rows'])} served rows, against "
            f"{drift['reference']['rows']} training rows.</p>")
    features = "".join(f"<tr><td>{html.escape(f['feature'])}</td><td>{html.escape(f['method'])}</td>"
                       f"<td>{f['statistic']:.4g}</td><td class=\"{'bad' if f['drifted'] else 'ok'}\">"
                       f"{'drift' if f['drifted'] else 'ok'}</td></tr>" for f in drift["features"])
    prediction = drift.get("prediction_drift")
    prediction_html = "" if not prediction else (
        f"<p>Prediction drift ({html.escape(prediction['method'])} against {html.escape(prediction['reference'])}): "
        f"{prediction['statistic']:.4g}, <b>{'drift' if prediction['drifted'] else 'no drift'}</b>.</p>")
    return (f"{head}<table><tr><th>feature</th><th>method</th><th>statistic</th><th>verdict</th></tr>{features}"
            f"</table>{prediction_html}{_attribution_and_segments_html(drift)}")


def _attribution_and_segments_html(drift: dict) -> str:
    """Attribution drift's table and the per-segment verdicts, as both the drift and the monitor reports show them."""
    attribution = drift.get("attribution_drift")
    attribution_html = "" if not attribution else (
        f"<h3>Attribution drift ({html.escape(attribution['method'])}): {attribution['score']:.4g}, "
        f"<b>{'drift' if attribution['drifted'] else 'no drift'}</b></h3><table><tr><th>feature</th>"
        f"<th>training share</th><th>served share</th><th>change</th></tr>"
        + "".join(f"<tr><td>{html.escape(a['feature'])}</td><td>{a['reference_share']:.1%}</td>"
                  f"<td>{a['current_share']:.1%}</td><td>{a['change']:+.1%}</td></tr>" for a in attribution["features"])
        + "</table>")
    segments = "".join(f"<tr><td>{html.escape(sg['field'])}={html.escape(sg['value'])}</td>"
                       f"<td>{sg['serving_rows']}</td><td>{html.escape(sg['status'])}</td>"
                       f"<td>{sg['share_drifted']:.0%}</td>"
                       f"<td>{html.escape(', '.join(sg['drifted_features']))}</td></tr>" for sg in drift["segments"])
    segments_html = "" if not segments else (
        f"<h3>Drift per segment</h3><table><tr><th>segment</th><th>sampled rows</th><th>status</th>"
        f"<th>share drifted</th><th>drifted features</th></tr>{segments}</table>")
    return attribution_html + segments_html
