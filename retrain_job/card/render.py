"""A model card (`build.build_card`) as one self-contained HTML page: no scripts, no external assets, every text
escaped. The drift and monitor reports' look (`retrain_job.report`)."""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

from retrain_job.report import _STYLE, _metric_cell, _number, _when

_CARD_STYLE = _STYLE + """
.muted{color:#52606d}.missing{color:#8a6d00;font-style:italic}
.bar{display:inline-block;height:10px;background:#f0831e;border-radius:2px;vertical-align:middle}
.badge{border-radius:6px;padding:2px 8px;font-size:13px;margin-left:8px;background:#e3f9e5;border:1px solid #91d8a0}
section{margin-bottom:8px}
"""
NOT_STATED = "not stated in the spec"
_METRIC_NAMES = {"macro_f1": "macro F1", "log_loss": "log loss", "ece": "calibration error (ECE, top label)",
                 "roc_auc": "ROC AUC", "pr_auc": "PR AUC (average precision)", "brier": "Brier score",
                 "rmse": "RMSE", "mae": "MAE", "mean_width": "mean interval width",
                 "median_width": "median interval width"}


def _e(value: object) -> str:
    return html.escape(str(value))


def _missing(why: str) -> str:
    return f'<p class="missing">Not recorded: {_e(why)}.</p>'


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A table of already-escaped cells."""
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _value(value: object) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return "" if value is None else _e(value)


def _stated(text: str | None) -> str:
    """What the spec says, or that it says nothing."""
    return _e(text) if text else f'<span class="missing">{NOT_STATED}</span>'


def _items(values: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(v)}</li>" for v in values) + "</ul>" if values else f"<p>{_stated(None)}</p>"


def _purpose(p: Mapping) -> str:
    return (f"<section><h2>Purpose</h2><h3>Description</h3><p>{_stated(p['description'])}</p>"
            f"<h3>Intended use</h3><p>{_stated(p['intended_use'])}</p><h3>Out of scope</h3>{_items(p['out_of_scope'])}"
            f"<h3>Owners</h3>{_items(p['owners'])}<h3>Limitations stated by the owners</h3>"
            f"{_items(p['limitations'])}</section>")


def _training_data(t: Mapping, gaps: Mapping[str, str]) -> str:
    sources = _table(("source file", "rows", "sha256", "provenance", "licence"), (
        (_e(s["name"]), _value(s["rows"]), f"<code>{_e(s['sha256'])}</code>", _stated(s["source"]),
         _stated(s["licence"])) for s in t["sources"]))
    facts = "".join(f"<h3>{title}</h3>" + (f"<p>{_pairs(t[key])}</p>" if t[key] is not None
                                           else _missing(gaps[f"training_data.{key}"]))
                    for key, title in (("date_range", "Date range"), ("target", "Labels or target distribution")))
    return (f"<section><h2>Training data</h2>{sources}<p>{_value(t['train_rows'])} training rows, "
            f"{_value(t['holdout_rows'])} held out ({_pairs(t['holdout'])}). Fingerprint "
            f"<code>{_e(t['fingerprint'])}</code>.</p>{facts}</section>")


def _pairs(facts: Mapping) -> str:
    """`key value` pairs, a nested table's flattened one level (a label's count: `labels yes 3`)."""
    return ", ".join(f"{_e(k)} {_pairs(v) if isinstance(v, Mapping) else _value(v)}" for k, v in facts.items())


def _holdout(h: Mapping, classifier: bool, gaps: Mapping[str, str]) -> str:
    overall = h["overall"]
    if classifier:
        table = _table(("metric", "holdout"), ((_e(_METRIC_NAMES.get(k, k)), _value(v)) for k, v in overall.items()))
    else:
        names = ("rmse", "mae", "coverage", "mean_width", "median_width", "rows")
        table = _table(("regime", *(_METRIC_NAMES.get(n, n) for n in names)),
                       ((_e(regime), *(_value(m.get(n)) for n in names)) for regime, m in overall["regimes"].items()))
        base = overall.get("baseline")
        if base:
            table += (f"<p>The {_e(base['regime'])} regime's baseline formula alone: RMSE {_value(base['rmse'])}, "
                      f"MAE {_value(base['mae'])}.</p>")
    segments = []
    for field, rows in h["segments"].items():
        if rows is None:
            segments.append(f"<h3>Per {_e(field)}</h3>{_missing(gaps[f'holdout.segments.{field}'])}")
            continue
        keys = [k for k in ("regime", "rows", "accuracy", "macro_f1", "log_loss", "rmse", "coverage")
                if any(k in r for r in rows)]
        segments.append(f"<h3>Per {_e(field)}</h3>" + _table(
            (field, *(_METRIC_NAMES.get(k, k) for k in keys)),
            ((_e(r["value"]), *(_value(r.get(k)) for k in keys)) for r in rows)))
    return f"<section><h2>Holdout quality</h2>{table}{''.join(segments)}</section>"


def _intervals(i: Mapping | None, unit: str) -> str:
    if i is None:
        return ""
    rows = []
    for r in i["regimes"]:
        factor = r["half_width"] == "factor"
        levels = ", ".join(f"{_e(level)} {_width(w, factor, unit)}" for level, w in r["by_level"].items())
        rows.append((_e(r["regime"]), _e(", ".join(r["needs"]) or "nothing"), _value(r["coverage"]),
                     _value(r["mean_width"]), levels or "", _width(r["pooled"], factor, unit),
                     _width(r["widest"], factor, unit)))
    return (f"<section><h2>Prediction intervals ({i['level']:.0%})</h2>" + _table(
        ("regime", "needs", "holdout coverage", "mean width", "half-width per level",
         "pooled (missing or unseen level)", "widest (inputs outside the training ranges)"), rows) +
        "<p class=\"muted\">A row goes to the first regime whose inputs it has; without them a later regime answers "
        "with its own, wider intervals. A row with a numeric input outside its training range is flagged as an "
        "extrapolation and gets its regime's widest interval.</p></section>")


def _width(w: float | None, factor: bool, unit: str) -> str:
    if w is None:
        return ""
    return f"&times;/&divide; {_number(w)}" if factor else f"&plusmn; {_number(w)} {_e(unit)}"


def _threshold(t: Mapping | None) -> str:
    if not t:
        return ""
    rule = _e(t.get("rule")) + (f" {_e(t['rule_value'])}" if t.get("rule_value") is not None else "")
    oof = ", ".join(f"{_e(k)} {_value(v)}" for k, v in (t.get("training_oof") or {}).items())
    return (f"<section><h2>Decision threshold</h2><p>Positive when its probability is at least "
            f"<b>{_value(t.get('value'))}</b>, chosen by the rule {rule} on {_e(t.get('fitted_on', ''))} "
            f"({oof}){'' if t.get('reached', True) else '; <b>the rule was not reached</b>'}.</p></section>")


def _calibration(c: Mapping | None, classifier: bool, gaps: Mapping[str, str]) -> str:
    if not classifier:
        return ""
    if c is None:
        return f"<section><h2>Calibration</h2>{_missing(gaps['calibration'])}</section>"
    applied = (f"{_e(c.get('method'))} applied (temperature {_value(c.get('temperature'))})" if c.get("applied")
               else f"no {_e(c.get('method'))} needed (training rows' ECE within {_value(c.get('threshold'))})")
    measured_on = {"training_oof": "training rows, out of fold", "holdout": "holdout"}
    rows = [(_e(_METRIC_NAMES.get(what, what)), _e(label), _value((c.get(f"{what}_before") or {}).get(where)),
             _value((c.get(f"{what}_after") or {}).get(where)))
            for what in ("ece", "log_loss") for where, label in measured_on.items()]
    return (f"<section><h2>Calibration</h2><p>{applied}; fitted on {_e(c.get('fitted_on', ''))}.</p>"
            + _table(("measure", "measured on", "before", "after"), rows) + "</section>")


def _gate(g: Mapping | None, gaps: Mapping[str, str]) -> str:
    if g is None:
        return f"<section><h2>Quality gate</h2>{_missing(gaps['gate'])}</section>"
    compared = _e(g.get("compared_with")) if g.get("compared_with") else "no stable version (sanity checks only)"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in g.get("reasons") or ())
    policy = ", ".join(f"{_e(k)} {_value(v)}" for k, v in (g.get("policy") or {}).items())
    return (f"<section><h2>Quality gate</h2><p><b>{'passed' if g.get('passed') else 'rejected'}</b>, compared with "
            f"{compared}. Policy: {policy}.</p><ul>{reasons}</ul></section>")


def _importance(f: Mapping | None, gaps: Mapping[str, str]) -> str:
    if f is None:
        return f"<section><h2>Feature importance</h2>{_missing(gaps['feature_importance'])}</section>"
    top = max((x["share"] for x in f["features"]), default=0.0) or 1.0
    rows = ((_e(x["feature"]), _value(x["mean_abs_shap"]), f"{x['share']:.1%}",
             f'<span class="bar" style="width:{x["share"] / top * 240:.0f}px"></span>') for x in f["features"])
    return (f"<section><h2>Feature importance</h2><p class=\"muted\">Mean absolute TreeSHAP attribution over "
            f"{_value(f['rows'])} training rows, in {_e(f['unit'])}.</p>"
            + _table(("feature", "mean |SHAP|", "share", ""), rows) + "</section>")


def _limits(k: Mapping) -> str:
    numeric = _table(("numeric input", "unit", "required", "training range", "possible"), (
        (_e(n["feature"]), _e(n["unit"]), "yes" if n["required"] else "no",
         "{:g} to {:g}".format(*n["training_range"]), "{:g} to {:g}".format(*n["bounds"])) for n in k["numeric"]))
    unseen = {"reject": "refused (400)", "missing": "served as unknown, with a warning"}
    categorical = _table(("category", "required", "levels seen in training", "an unseen level"), (
        (_e(c["feature"]), "yes" if c["required"] else "no", _e(", ".join(c["levels"])),
         _e(unseen.get(c["unseen"], c["unseen"]))) for c in k["categorical"]))
    return (f"<section><h2>Known limits</h2>{numeric}<p class=\"muted\">A value outside its training range is "
            "answered with a warning: the trees have seen nothing beyond it.</p>"
            f"{categorical}</section>")


def _live(live: Mapping | None, gaps: Mapping[str, str]) -> str:
    if live is None:
        return f"<section><h2>Live quality</h2>{_missing(gaps['live_quality'])}</section>"
    window = live["window"]
    head = (f"<p>The monitor's latest report ({_value(live['report'])}), generated "
            f"{_e(_when(live['generated_at'] or ''))}: feedback from {_e(_when(window['feedback_from'] or ''))} to "
            f"{_e(_when(window['to'] or ''))}; a verdict needs {_value(live['min_labels'])} labels.</p>")
    if not live["versions"]:
        body = "<p class=\"missing\">That report saw no predictions of this version.</p>"
    else:
        body = "".join(_live_table(v, v["role"]) for v in live["versions"])
    segments = "".join(_live_table(s, f"{s['segment']} ({s['role']})") for s in live["segments"])
    drift = live.get("drift")
    drift_html = "" if not drift else (
        f"<p>Drift against the training reference: <b>{_e(drift.get('status'))}</b>, "
        f"{drift.get('share_drifted') or 0.0:.0%} of features drifted "
        f"({_e(', '.join(drift.get('drifted_features') or ()) or 'none')}).</p>")
    return f"<section><h2>Live quality</h2>{head}{body}{segments}{drift_html}</section>"


def _live_table(v: Mapping, title: str) -> str:
    verdict = v["verdict"] or "no verdict (too few labels)"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in v["reasons"])
    cells = "".join(f"<tr><td>{_e(_METRIC_NAMES.get(name, name))}</td>{_metric_cell(m)}</tr>"
                    for name, m in v["metrics"].items())
    return (f"<h3>{_e(title)}: {_e(verdict)}</h3><p>{_value(v['labels'])} labelled of "
            f"{_value(v['predictions'])} predictions.</p><table><tr><th>metric</th><th>realised</th></tr>"
            f"{cells}</table><ul>{reasons}</ul>")


def render_card(card: Mapping) -> str:
    """The card as a self-contained page: purpose, data, holdout quality, intervals or threshold, calibration, gate,
    importance, limits and live quality; a fact not recorded says so."""
    m, gaps = card["model"], card["not_recorded"]
    title = _e(m["title"])
    classifier = m["task"] != "regression"
    unit = m["target"].get("unit", "")
    gap_list = "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in gaps.items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title} — model card</title>
<style>{_CARD_STYLE}</style></head><body>
<h1>{title} — model card<span class="badge">{_e(m['serving'])}</span></h1>
<p class="sub">Model <b>{_e(m['name'])}</b> ({_e(m['task'])}), version <b>{_e(m['version'])}</b>, trained
{_e(_when(m.get('created_at') or ''))}. Predicts <b>{_e(m['target']['name'])}</b>{f' ({_e(unit)})' if unit else ''}.
Card generated {_e(_when(card['generated_at']))}.</p>
{_purpose(card['purpose'])}
{_training_data(card['training_data'], gaps)}
{_holdout(card['holdout'], classifier, gaps)}
{_intervals(card['intervals'], unit)}
{_threshold(card['threshold'])}
{_calibration(card['calibration'], classifier, gaps)}
{_gate(card['gate'], gaps)}
{_importance(card['feature_importance'], gaps)}
{_limits(card['known_limits'])}
{_live(card['live_quality'], gaps)}
<h2>Not recorded</h2>{f'<ul>{gap_list}</ul>' if gap_list else '<p>Nothing: every fact above was recorded.</p>'}
</body></html>"""
