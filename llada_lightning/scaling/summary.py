"""A plain-text summary of `fit_study`'s result: every number printed is read from the result, never recomputed.

Numbers are printed with 4 significant digits (`NUM`), intervals as `[low, high]` at the bootstrap level.
"""

from __future__ import annotations

NUM = ".4g"


def fmt(value) -> str:
    """A number of the summary: 4 significant digits; `nan` for a missing value (NaN/inf become None in JSON)."""
    return "nan" if value is None else format(float(value), NUM)


def fmt_interval(pair) -> str:
    if not pair or len(pair) != 2:
        return ""
    return f" [{fmt(pair[0])}, {fmt(pair[1])}]"


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
            f"{name}: frontier L*(C) = {form}: alpha = {fmt(fr.get('alpha'))}{fmt_interval(interval.get('alpha'))}  "
            f"E = {fmt(fr.get('E'))}  A = {fmt(fr.get('A'))}  ({fr.get('n_points')} {fr.get('source')} points)"
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
                f"{name}: parametric L(N, D) = E + A/N^alpha + B/D^beta: E = {fmt(par.get('E'))}  "
                f"alpha = {fmt(par.get('alpha'))}{fmt_interval(interval.get('alpha'))}  "
                f"beta = {fmt(par.get('beta'))}{fmt_interval(interval.get('beta'))}  "
                f"(implied a = {fmt(par.get('a_implied'))})"
            )
    return lines


def format_summary(fit: dict, files: dict[str, str] | None = None) -> str:
    """The summary of a study, one fact per line; `files` maps a label (fit.json, plots) to a path."""
    level = fit.get("bootstrap", {}).get("level", 0.95)
    n_boot = fit.get("bootstrap", {}).get("n_resamples", 0)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(fit.get("status_counts", {}).items()))
    lines = [
        f"runs: {fit.get('n_runs', 0)} ({counts or 'none'}); FLOP convention: {_convention(fit)}",
        f"intervals: {100 * level:g}% percentile bootstrap, {n_boot} resamples"
        if n_boot
        else "intervals: none (no bootstrap)",
    ]
    for name, sec in fit.get("objectives", {}).items():
        lines += _objective_lines(name, sec)
    cmp = fit.get("comparison")
    if cmp:
        k_iv = cmp.get("interval", {}).get("k", [[], []])
        r_iv = cmp.get("interval", {}).get("optimal_size_ratio", [[], []])
        lines.append(f"compute multiplier k with L_{cmp['mdm']}(k C) = L_{cmp['arm']}(C):")
        for i, c in enumerate(cmp.get("compute", [])):
            k_pair = [k_iv[0][i], k_iv[1][i]] if len(k_iv[0]) > i else None
            text = f"  C = {fmt(c)}: k = {fmt(cmp['k'][i])}{fmt_interval(k_pair)}"
            if "optimal_size_ratio" in cmp:
                r_pair = [r_iv[0][i], r_iv[1][i]] if len(r_iv[0]) > i else None
                text += f"  N*_{cmp['mdm']}/N*_{cmp['arm']} = {fmt(cmp['optimal_size_ratio'][i])}{fmt_interval(r_pair)}"
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
