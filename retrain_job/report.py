"""The drift report: a JSON document of thresholds, statistics and verdicts, and an HTML page of it.

Reference is the training data; current is recent serving inputs (from the prediction log lines) plus
newly labelled rows. The features compared are the contract's. Only histograms go into the report, never
raw rows, so its size does not grow with the traffic and no request's values are copied into it.
"""
from __future__ import annotations

import html
from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from retrain_job.drift import DriftThresholds, FeatureDrift, categorical_drift, numeric_drift, share_drifted
from shared.contract import FeatureContract
from shared.spec import ModelSpec

SCHEMA_VERSION = 2
MISSING = "(missing)"


def _categories(series: pd.Series, canonical: dict[str, str]) -> list[str]:
    return [MISSING if v is None or (isinstance(v, float) and np.isnan(v))
            else canonical.get(str(v).strip().lower(), str(v).strip()) for v in series.tolist()]


def _numbers(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def build_report(spec: ModelSpec, contract: FeatureContract, reference: pd.DataFrame, serving: pd.DataFrame,
                 labelled: pd.DataFrame, *, thresholds: DriftThresholds, window: dict) -> dict:
    """Compare reference with current (serving + labelled) feature by feature, and the predictions' distribution.

    A numeric feature with fewer than `thresholds.min_rows` current values (an optional input most requests
    leave out) is listed as skipped rather than judged.
    """
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
    }
    if len(current) < t.min_rows:
        report["status"] = "not_enough_data"
        report["message"] = f"{len(current)} current rows; at least {t.min_rows} are needed for a verdict"
        return report
    features: list[FeatureDrift] = []
    for f in contract.numeric:
        ref, cur = _numbers(reference[f.name]), _numbers(current[f.name])
        given = int(np.isfinite(cur).sum())
        if given < t.min_rows:
            report["skipped_features"].append({"feature": f.name, "reason": f"{given} current values; at least "
                                                                            f"{t.min_rows} are needed"})
            continue
        features.append(numeric_drift(f.name, ref, cur, t))
    for c in contract.categorical:
        canonical = {str(v).strip().lower(): str(v) for v in reference[c.name].dropna().unique()}
        features.append(categorical_drift(c.name, _categories(reference[c.name], canonical),
                                          _categories(current[c.name], canonical), t))
    report["features"] = [f.to_dict() for f in features]
    report["drifted_features"] = [f.feature for f in features if f.drifted]
    report["share_drifted"] = share_drifted(features)
    report["status"] = "drift" if report["share_drifted"] >= t.share else "no_drift"
    if "predicted" in serving and len(serving) >= t.min_rows:
        name, target = f"predicted_{spec.target.name}", reference[spec.target.name]
        if spec.is_classifier:
            mix = categorical_drift(name, target.tolist(), serving["predicted"].tolist(), t)
        else:
            mix = numeric_drift(name, _numbers(target), _numbers(serving["predicted"]), t)
        report["prediction_drift"] = mix.to_dict()
    return report


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
</body></html>"""
