"""A plain-text summary of `fit_study`'s result: every number printed is read from the result, never recomputed.

Numbers are printed with 4 significant digits (`NUM`); a parameter at a bound of its fit prints as such
(`E = 0 (at bound)`). A reliable interval prints as `[low, high] (n_ok/n refits ok)` at the bootstrap level, so every
interval says how many of its refits failed; an unreliable one prints as `[unreliable: why]` (with the same count)
and never as an interval (bootstrap.py says when an interval is reliable).
"""

from __future__ import annotations

import math

from llada_lightning.scaling.requirements import NEGLIGIBLE

NUM = ".4g"
TINY = 1e-100  # |value| below this prints as 0 (an exp(-inf) parameter, e.g. E = 1e-296, is 0)
ZERO_ABS = 1e-9  # a loss-like parameter (nats) below this at its bound 0 prints as just 0


def fmt(value) -> str:
    """A number of the summary: 4 significant digits; `nan` for a missing value (NaN/inf become None in JSON)."""
    if value is None:
        return "nan"
    v = float(value)
    return "0" if v != 0 and abs(v) < TINY else format(v, NUM)


def fmt_param(sec: dict, name: str) -> str:
    """A fitted parameter, with `(at bound)` when the fit drove it to a bound of the law: E (A, B) at 0 prints as
    `0 (at bound)`, with the fitted value when that is not itself ~0 (an exp(e) drifting towards 0)."""
    bound = (sec.get("at_bound") or {}).get(name)
    value = sec.get(name)
    if bound == "lower" and name in ("E", "A", "B"):
        tiny = value is None or abs(float(value)) < ZERO_ABS
        return "0 (at bound)" if tiny else f"0 (at bound; fitted {fmt(value)})"
    return fmt(value) + (f" (at {bound} bound)" if bound else "")


def _short_problem(rec: dict) -> str:
    kind = rec.get("problem_kind")
    if kind == "failed refits":
        return f"{rec['n_failed']}/{rec['n_resamples']} refits failed"
    if kind == "at bound":
        return "every refit at the bound 0"
    if kind == "too few resamples":
        return f"only {rec['n_resamples']} resamples"
    if kind == "not estimable":
        return (
            "noise not estimable: no residual degrees of freedom"
            if "residual" in (rec["problem"] or "")
            else (rec["problem"] or "not estimable")
        )
    return kind or rec.get("problem") or "unreliable"


def fmt_interval(rec, zero_below: float = 0.0) -> str:
    """` [low, high] (n_ok/n refits ok)`, ` [unreliable: why]`, or "" without an interval.

    `zero_below`: bounds of a parameter bounded below by 0 that lie below this print as 0 (at the bound)."""
    if not rec:
        return ""
    if not isinstance(rec, dict):  # a [low, high] pair
        return f" [{fmt(rec[0])}, {fmt(rec[1])}]" if len(rec) == 2 else ""
    if not rec.get("reliable"):
        why = _short_problem(rec)
        if rec.get("problem_kind") not in ("failed refits", "not estimable", "no resamples"):
            why += f"; {rec['n_ok']}/{rec['n_resamples']} refits ok"
        return f" [unreliable: {why}]"

    digits = 4  # enough significant digits that the two bounds print differently (a narrow interval is no point)
    if rec["low"] is not None and rec["high"] is not None:
        while digits < 12 and format(rec["low"], f".{digits}g") == format(rec["high"], f".{digits}g"):
            digits += 1

    def bound(v) -> str:
        return "0" if 0 <= v < zero_below else ("0" if v != 0 and abs(v) < TINY else format(v, f".{digits}g"))

    low = "(-inf" if rec["low"] is None or rec["low"] == -math.inf else "[" + bound(rec["low"])
    high = "inf)" if rec["high"] is None or rec["high"] == math.inf else bound(rec["high"]) + "]"
    return f" {low}, {high} ({rec['n_ok']}/{rec['n_resamples']} refits ok)"


def _convention(fit: dict) -> str:
    conv = fit.get("conventions") or []
    if conv == ["6N"]:
        return "6N (C = 6 N D, N = non-embedding parameters)"
    if conv == ["full"]:
        return "full (every matmul, output head and attention)"
    return ", ".join(conv) or "unknown"


def _objective_lines(name: str, sec: dict) -> list[str]:
    lines = []
    iso = sec.get("isoflop", {})
    budgets = iso.get("budgets", [])
    if "error" in iso:
        n_interior = sum(bool(b.get("interior")) for b in budgets)
        lines.append(
            f"{name}: IsoFLOP fit failed: {n_interior} of {len(budgets)} budgets have an interior parabola vertex, "
            "the exponents need 2 (see warnings)"
        )
    else:
        interval = iso.get("interval", {})
        lines.append(
            f"{name}: a = {fmt(iso.get('a'))}{fmt_interval(interval.get('a'))}  "
            f"b = {fmt(iso.get('b'))}{fmt_interval(interval.get('b'))}  "
            f"(N* ~ C^a, D* ~ C^b; {len(iso.get('budgets_used', []))} of {len(budgets)} budgets used)"
        )
    for b in budgets:
        if b.get("interior"):  # an off-centre vertex biases the parabola's estimate (arXiv 2603.22339)
            where = (
                f"interior, {fmt(b.get('log10_below'))} dec above the smallest size, {fmt(b.get('log10_above'))} below"
            )
        else:
            where = "outside the sizes" if b.get("convex") else "concave: no minimum"
        lines.append(
            f"{name}:   C = {fmt(b['budget'])}: N* = {fmt(b.get('N_star'))}  L* = {fmt(b.get('L_star'))}  "
            f"(grid {fmt(b.get('log10_span'))} dec; {where})"
        )
    fr = sec.get("frontier", {})
    if "error" in fr:
        lines.append(f"{name}: frontier fit failed: {fr['error']}")
    elif fr:
        interval = fr.get("interval", {})
        form = "E + A C^-alpha" if fr.get("irreducible") else "A C^-alpha (E = 0)"
        line = (
            f"{name}: frontier L*(C) = {form}: alpha = {fmt_param(fr, 'alpha')}{fmt_interval(interval.get('alpha'))}  "
            f"E = {fmt_param(fr, 'E')}{fmt_interval(interval.get('E'), _zero_below(fr.get('points', {}).get('L')))}  "
            f"A = {fmt(fr.get('A'))}  "
            f"({fr.get('n_points')} {fr.get('source')} points)"
        )
        lines.append(line)
        hold = fr.get("holdout", {})
        if "rel_error" in hold:
            lines.append(
                f"{name}:   held-out largest budget C = {fmt(hold['C'])}: L = {fmt(hold['L'])}, "
                f"predicted {fmt(hold['predicted'])} (relative error {fmt(hold['rel_error'])})"
            )
    par = sec.get("parametric")
    if par is not None:
        if "error" in par:
            lines.append(f"{name}: parametric fit skipped: {par['error']}")
        else:
            interval = par.get("interval", {})
            lines.append(
                f"{name}: parametric L(N, D) = E + A/N^alpha + B/D^beta: E = {fmt_param(par, 'E')}"
                f"{fmt_interval(interval.get('E'), _zero_below([par.get('loss_min')]))}  "
                f"alpha = {fmt(par.get('alpha'))}{fmt_interval(interval.get('alpha'))}  "
                f"beta = {fmt(par.get('beta'))}{fmt_interval(interval.get('beta'))}  "
                f"(implied a = {fmt(par.get('a_implied'))})"
            )
    return lines


def _zero_below(losses) -> float:
    """Where E counts as 0: below AT_BOUND x the smallest loss (parametric.NEGLIGIBLE; the frontier's bound test)."""
    values = [v for v in (losses or []) if v is not None]
    return NEGLIGIBLE * min(values) if values else 0.0


def _k_value(value) -> str:
    return "inf" if value is None else fmt(value)  # k = inf: the MDM never reaches the ARM's loss (JSON null)


def _bootstrap_lines(fit: dict) -> list[str]:
    boot = fit.get("bootstrap", {})
    n_boot = boot.get("n_resamples", 0)
    if not n_boot:
        return ["intervals: none (no bootstrap)"]
    level = boot.get("level", 0.95)
    scheme = boot.get("scheme", "pairs")
    allowed = int((1 - level) / 2 * (n_boot - 1))
    return [
        f"intervals: {100 * level:g}% percentile bootstrap, {n_boot} resamples ({scheme} resampling of the IsoFLOP "
        "fits, pairs for the parametric law); a failed refit counts as an unbounded outcome, so an interval with "
        f"more than {allowed} failed refits is unreliable"
    ]


def format_summary(fit: dict, files: dict[str, str] | None = None) -> str:
    """The summary of a study, one fact per line; `files` maps a label (fit.json, plots) to a path."""
    counts = ", ".join(f"{v} {k}" for k, v in sorted(fit.get("status_counts", {}).items()))
    lines = [f"runs: {fit.get('n_runs', 0)} ({counts or 'none'}); FLOP convention: {_convention(fit)}"]
    for status, kinds in sorted(fit.get("reason_counts", {}).items()):
        lines.append(f"  {status} by reason: " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))
    lines += [f"  note: {n}" for n in fit.get("input_notes", [])]
    lines += _bootstrap_lines(fit)
    for name, sec in fit.get("objectives", {}).items():
        lines += _objective_lines(name, sec)
    cmp = fit.get("comparison")
    if cmp:
        k_iv = cmp.get("interval", {}).get("k") or []
        r_iv = cmp.get("interval", {}).get("optimal_size_ratio") or []
        assumes = f" (assumes {cmp['assumes']})" if cmp.get("assumes") else ""
        lines.append(f"compute multiplier k with L_{cmp['mdm']}(k C) = L_{cmp['arm']}(C){assumes}:")
        for i, c in enumerate(cmp.get("compute", [])):
            text = f"  C = {fmt(c)}: k = {_k_value(cmp['k'][i])}{fmt_interval(k_iv[i] if i < len(k_iv) else None)}"
            if "optimal_size_ratio" in cmp:
                r_rec = r_iv[i] if i < len(r_iv) else None
                text += f"  N*_{cmp['mdm']}/N*_{cmp['arm']} = {fmt(cmp['optimal_size_ratio'][i])}{fmt_interval(r_rec)}"
            lines.append(text)
    warnings = fit.get("warnings", [])
    if warnings:
        lines.append(f"warnings ({len(warnings)}):")
        lines += [f"  - {w}" for w in warnings]
    else:
        lines.append("warnings: none")
    for label, path in (files or {}).items():
        lines.append(f"{label}: {path}")
    return "\n".join(lines)
