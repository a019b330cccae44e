"""Result views shared by the pages and the lessons: compute a setting (cached), show its figures,
tables, messages and downloads. Every library error becomes an ``st.error`` sentence, never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from optimizers import OPTIMIZERS

from app import chart, compute, controls, state
from app import figures as F
from app.text import plain

def _landscape(values: Mapping[str, Any]):
    """The landscape of a setting, or ``None`` after showing why it could not be built."""
    try:
        controls.check_domain_aspect(values)
        key = controls.landscape_key_of(values)
        return key, compute.build_landscape(key)
    except ValueError as exc:
        st.error(plain(f"The landscape could not be built: {exc}"))
        return None, None


def over_budget(work: float, what: str) -> bool:
    """Show why a setting is not computed when it asks for more than the work budget."""
    try:
        budget = controls.max_work()
    except ValueError as exc:
        st.warning(plain(f"{exc}. Using the default budget of {controls.DEFAULT_MAX_WORK:,} steps."))
        budget = controls.DEFAULT_MAX_WORK
    message = controls.work_message(work, budget, what)
    if message:
        st.error(plain(message))
    return message is not None


def divergence_messages(paths: Sequence[F.Path], domain) -> list[str]:
    """One sentence per run that diverged (a non-finite loss, or a loss a million times its start's),
    left the plotted domain, or started outside it."""
    out = []
    for p in paths:
        if p.diverged_at is not None:
            out.append(f"{p.label} diverged at step {p.diverged_at}: the loss became non-finite, so the run "
                       f"stopped there (marked ✕). Try a smaller lr or eps.")
            continue
        left = F.escaped_at(p.xy, domain)
        if left is None:
            continue
        first, last = float(p.loss[0]), float(p.loss[-1])
        if left == 0:
            out.append(f"{p.label} starts outside the plotted domain, at ({p.xy[0, 0]:.4g}, {p.xy[0, 1]:.4g}); "
                       "choose a start inside it to see the path.")
        elif math.isfinite(last) and abs(last) > 1e6 * max(1.0, abs(first)):
            out.append(f"{p.label} diverged: its loss grew from {first:.3g} to {last:.3g} and the path left the "
                       f"plotted domain at step {left}. Try a smaller lr or eps.")
        else:
            out.append(f"{p.label} left the plotted domain at step {left} (final loss {last:.3g}); "
                       f"its lr is probably too large for this landscape.")
    return out


def playground_results(values: Mapping[str, Any], *, key: str, click: bool = False,
                       downloads: bool = True, show_3d: bool = True, stored: Any = None) -> dict[str, Any] | None:
    """Run every chosen optimizer of a Playground setting and show the figures. Returns what was
    drawn (figures, paths) for the tests, or ``None`` when nothing could be run. ``stored``: the
    placeholder of the stored landing picture (``app.landing``), shown while every seed is computed at
    once (no first pass), and cleared just before the live charts are drawn."""
    lkey, ls = _landscape(values)
    if ls is None:
        return None
    # Every message goes into this one container, so that the charts after it keep their place in the
    # page whatever messages a setting has (a new element before them would make Streamlit remount them).
    messages = st.container()
    start = controls.start_point(values, ls)
    steps, seed, budget, repeats = int(values["steps"]), int(values["seed"]), values["budget"], int(values["repeats"])
    names = list(values["opts"])
    if not names:
        messages.error("Choose at least one optimizer.")
        return None
    with messages:
        if over_budget(controls.playground_work(values), f"{steps} steps × {repeats} seed(s) × {len(names)} "
                                                             f"optimizer(s)"):
            return None
    hypers = {n: controls.hyper_of(values, n) for n in names}
    steps_of = {n: steps for n in names}
    fair = values.get("fair", "off")
    notes = []
    if fair == "budget":
        total, steps_of = compute.budget_steps(names, steps, hypers)
        notes.append(f"Equal forward passes: every optimizer gets {total} forward passes (2 × {steps} steps): "
                     + ", ".join(f"{OPTIMIZERS[n].title} {s} steps" for n, s in steps_of.items())
                     + ". First-order Adam's backward pass is not counted.")
    elif fair == "path" and len(names) > 1:
        ref = "adam" if "adam" in names else names[0]
        try:
            ref_run = compute.trajectory(lkey, ref, steps, compute.hyper_items(hypers[ref]), start, seed, budget)
            target = ref_run.path_length
        except ValueError as exc:
            ref_run, target = None, math.nan
            messages.error(plain(f"{OPTIMIZERS[ref].title} could not run: {exc}"))
        if ref_run is None:
            pass
        elif ref_run.diverged_at is not None or not math.isfinite(target) or target <= 0:
            messages.warning(f"Equal path length needs a reference run that moves and stays finite; "
                             f"{OPTIMIZERS[ref].title} did not, so the learning rates are left as set.")
        else:
            lengths, missed, tolerance = [], [], None
            with messages, st.spinner("Matching path lengths (solving for each lr; cached afterwards)…"):
                for n in names:
                    if n == ref:
                        continue
                    others = {k: v for k, v in hypers[n].items() if k != "lr"}
                    try:
                        match = compute.matched_lr(lkey, n, target, steps, compute.hyper_items(others), start,
                                                   seed, budget)
                    except ValueError as exc:
                        messages.warning(plain(f"Could not match {OPTIMIZERS[n].title}'s path length: {exc}"))
                        continue
                    hypers[n] = hypers[n] | {"lr": match.lr}
                    tolerance = match.tolerance
                    lengths.append(f"{OPTIMIZERS[n].title} {match.path_length:.4g} (lr = {match.lr:.4g})")
                    if not match.reached:
                        missed.append(n)
                        messages.warning(
                            f"No lr makes {OPTIMIZERS[n].title}'s path as long as {OPTIMIZERS[ref].title}'s "
                            f"({target:.4g}) to within {match.tolerance:.0%}: the closest found, lr = {match.lr:.4g}, "
                            f"gives {match.path_length:.4g} ({match.relative_error:+.0%}), and it is the one used.")
            ref_length = f"{OPTIMIZERS[ref].title} {target:.4g}"
            if not lengths:
                notes.append(f"Equal path length: nothing to match to {ref_length}.")
            elif missed:
                notes.append("Path lengths, not all equal: " + "; ".join([ref_length] + lengths) + ".")
            else:
                notes.append(f"Equal path length (to within {tolerance:.0%}): " + "; ".join([ref_length] + lengths)
                             + ".")
    results, paths = [], []
    colours = compute.colours(names)
    requests = [r for n in names
                for r in compute.setting_runs(lkey, n, steps_of[n], hypers[n], start, seed, budget, repeats)]
    # A setting with many new runs (the landing view: 8 seeds) shows its first seed at once, then reruns for
    # the others: the first picture comes in about a second instead of after every seed.
    setting_id = str(hash((lkey, start, seed, budget, repeats, tuple(requests))))
    first_pass = (stored is None and repeats > 1 and compute.missing_work(requests) > PROGRESSIVE_MIN_WORK
                  and st.session_state.get(f"{key}:progressive") != setting_id)
    if first_pass:
        st.session_state[f"{key}:progressive"] = setting_id
        repeats = 1
        messages.info(first_pass_message(seed, int(values["repeats"])))
    compute.prefetch(r for r in requests if r[5] < seed + repeats)
    for n in names:
        try:
            r = compute.run_setting(lkey, n, steps_of[n], hypers[n], start, seed, budget, repeats)
        except ValueError as exc:
            messages.error(plain(f"{OPTIMIZERS[n].title} could not run: {exc}"))
            continue
        results.append(r)
        paths.append(r.path(colours[n]))
    if not paths:
        return None
    colour_mode = values.get("colour", "auto")
    surf = compute.surface(lkey, 120, colour_mode)
    surf.start = start
    for note in notes:
        messages.caption(note)
    for msg in divergence_messages(paths, surf.domain):
        messages.warning(msg)
    align = "forward_passes" if fair == "budget" else "step"
    # Everything the figures are computed from, so that unchanged figures are not rebuilt on a rerun.
    setting = (lkey, colour_mode, start, seed, budget, repeats, align,
               tuple((n, steps_of[n], compute.hyper_items(hypers[n]), colours[n]) for n in names
                     if any(r.name == n for r in results)))
    fig = compute.contour_figure(setting, surf, paths, align, compute.contour_image(lkey, 120, colour_mode),
                                 channel=key)
    loss = compute.loss_figure(setting, paths, ls.f_min, "Loss against forward passes", align=align, channel=key)
    out: dict[str, Any] = {"contour": fig, "loss": loss, "paths": paths, "results": results, "surface": surf}
    if stored is not None:
        stored.empty()  # the live charts take the stored picture's place
    tabs = st.tabs(["Contour", "3-D surface"]) if show_3d else [st.container()]
    with tabs[0]:
        # On the contour a click sets the start; a double click would too, so Plotly's double-click zoom
        # reset is off there (the modebar's reset button does it). The two charts share a row when there
        # is room for both and stack otherwise; the loss plot's cursor follows the contour's player.
        config = {"displaylogo": False, "doubleClick": False} if click else {"displaylogo": False}
        chart.plotly_charts([fig, loss], key=f"{key}:chart", configs=[config, {"displaylogo": False}],
                            basis=[460, 380], clickable=click, titles=[surf.title, "Loss against forward passes"])
        st.caption("▶ Play animates the runs (the loss plot's markers follow); the slider scrubs, the speed "
                   "menu sets the pace." + (" Click anywhere on the contour to start from there." if click else ""))
        rows = compute.metrics_rows(results, ls)
        out["rows"] = rows
        main, more = compute.split_metrics(rows, presenting=chart.presenting())
        st.markdown(compute.markdown_table(main))
        with st.expander("More metrics (path length, forward passes, steps, divergence)"):
            st.markdown(compute.markdown_table(more))
    if show_3d:
        with tabs[1]:
            surf3 = compute.surface(lkey, 50, colour_mode)
            fig3 = F.surface_figure(surf3, paths, align=align, channel=key)
            out["surface3d"] = fig3
            chart.plotly_chart(fig3, key=f"{key}:surface", config={"displaylogo": False}, title=surf.title)
            st.caption("Drag to turn the surface; it follows the contour's player.")
    if first_pass:
        state.carry_errors()
        st.rerun()  # the page stays on screen while the next run computes the other seeds
    if downloads:
        download_row(surf, paths, key, align)
    return out


def first_pass_message(seed: int, repeats: int) -> str:
    """The note above a setting's first picture while its other seeds are computed."""
    return f"Showing seed {seed}; the other {repeats - 1} seed(s) are being computed…"


#: Above this much missing work (MeZO steps, ~0.5–1 s here), a setting with repeats is shown seed by
#: seed: first its first seed, then all of them.
PROGRESSIVE_MIN_WORK = 6000


def download_row(surf: F.Surface, paths: Sequence[F.Path], key: str, align: str = "step") -> None:
    """CSV of the trajectories, and for slides a PNG (1920 × 1080), a GIF (960 × 540) and an MP4
    (1920 × 1080) of the animation, each made when clicked."""
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Trajectories (CSV)", lambda: F.trajectories_csv(paths), file_name="trajectories.csv",
                       mime="text/csv", key=f"{key}:csv", on_click="ignore")
    c2.download_button("Figure (PNG)", lambda: F.png_bytes(F.mpl_contour(surf, paths)), file_name="contour.png",
                       mime="image/png", key=f"{key}:png", on_click="ignore")
    c3.download_button("Animation (GIF)", lambda: F.gif_bytes(surf, paths, align=align), file_name="animation.gif",
                       mime="image/gif", key=f"{key}:gif", on_click="ignore")
    c4.download_button("Animation (MP4)", lambda: F.mp4_bytes(surf, paths, align=align), file_name="animation.mp4",
                       mime="video/mp4", key=f"{key}:mp4", on_click="ignore")


def compare_results(values: Mapping[str, Any], *, key: str, downloads: bool = True) -> dict[str, Any] | None:
    """One or more optimizers with one hyperparameter swept: small multiples, loss bands and a ranking.

    Returns what was drawn (figures, ranking rows) and ``runs``: one ``(optimizer, value, RunResult)``
    per panel, in panel order, for the lessons' claims."""
    lkey, ls = _landscape(values)
    if ls is None:
        return None
    names = list(values["opt"]) if not isinstance(values["opt"], str) else [values["opt"]]
    try:
        plan = controls.sweep_plan(values)
    except ValueError as exc:
        st.error(plain(exc))
        return None
    if over_budget(controls.compare_work(values, plan), f"{values['steps']} steps × {values['repeats']} seed(s) × "
                                                          f"{len(plan)} panel(s)"):
        return None
    start = controls.start_point(values, ls)
    steps, seed, repeats = int(values["steps"]), int(values["seed"]), int(values["repeats"])
    messages = st.container()  # every message of the runs, so that the charts keep their place
    count = max(r.index for r in plan) + 1
    colours = F.sweep_colours(count)
    dashes = F.optimizer_dashes(names)
    compute.prefetch(r for p in plan
                     for r in compute.setting_runs(lkey, p.optimizer, steps, p.hyper, start, seed, p.seed_budget,
                                                   repeats))
    runs, panels, paths, rows_in = [], [], [], []
    for p in plan:
        colour, n = colours[p.index], p.optimizer
        try:
            r = compute.run_setting(lkey, n, steps, p.hyper, start, seed, p.seed_budget, repeats)
        except ValueError as exc:
            messages.error(plain(f"{p.label}: {exc}"))
            continue
        runs.append((n, p.value, r))
        seed_paths = [F.Path(f"seed {t.seed}", colour, t.xy, t.loss, t.forward_passes, t.diverged_at,
                             dash=dashes[n]) for t in r.runs]
        panels.append((p.label.replace(" · ", "<br>"), seed_paths))  # two short lines above a small panel
        path = r.path(colour)
        path.label, path.dash = p.label, dashes[n]
        paths.append(path)
        rows_in.append((controls.fmt(p.value), p.hyper.get("lr"), r, OPTIMIZERS[n].title))
    if not runs:
        return None
    surf = compute.surface(lkey, 70, "auto")
    who = ", ".join(OPTIMIZERS[n].title for n in names)
    per_value = values.get("lrs") and len(names) == 1
    lr_note = ("; lr per value: " + ", ".join(f"{controls.fmt(p.value)} → {p.hyper['lr']:.4g}" for p in plan)
               if per_value else "")
    st.caption(f"{who} on {ls.title}, {steps} steps, {repeats} seed(s) from {seed}{lr_note}; "
               f"everything else as set. Each panel shows every seed's path (✕: diverged).")
    for msg in divergence_messages(paths, surf.domain):
        messages.warning(msg)
    # Two panels a row up to four values (a row of four would be too small on a projector), four beyond.
    ncols = min(count, 4) if len(names) > 1 else (2 if len(panels) <= 4 else 4)
    ncols = min(ncols, len(panels))
    grid = F.small_multiples(surf, panels, ncols=ncols, height_per_row=60 + 680 // ncols)
    loss = F.loss_figure(paths, ls.f_min)
    chart.plotly_charts([grid, loss], key=f"{key}:grid", basis=[560, 380],
                        titles=[f"Paths on {ls.title}, every seed",
                                "Loss against forward passes: median and 10–90 % band over seeds"])
    rows = compute.ranking_rows([v for v, _, _, _ in rows_in], [r for _, _, r, _ in rows_in], str,
                                lrs=[lr for _, lr, _, _ in rows_in],
                                optimizers=[t for _, _, _, t in rows_in] if len(names) > 1 else None)
    st.markdown("**Ranking** (median final loss over seeds; a diverged run counts as ∞)")
    st.markdown(compute.markdown_table(rows))
    if downloads:
        all_paths = [F.Path(f"{lab}", p.colour, p.xy, p.loss, p.forward_passes, p.diverged_at,
                            extra={"seed": p.label.split()[-1]})
                     for lab, ps in panels for p in ps]
        c1, c2 = st.columns(2)
        c1.download_button("Trajectories (CSV)", F.trajectories_csv(all_paths), file_name="sweep.csv",
                           mime="text/csv", key=f"{key}:csv", on_click="ignore")
        first = [ps[0] for _, ps in panels]
        for p, (lab, _) in zip(first, panels):
            p.label = lab
        c2.download_button("Paths (PNG)", lambda: F.png_bytes(F.mpl_contour(surf, first)), file_name="sweep.png",
                           mime="image/png", key=f"{key}:png", on_click="ignore")
    return {"grid": grid, "loss": loss, "rows": rows, "values": [v for _, v, _ in runs], "runs": runs,
            "landscape": ls}
