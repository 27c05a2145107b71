"""`distill analyze`: a study folder's statistics, tables, figures and report, written as one folder.

Everything is assembled in a temporary folder beside the destination and
renamed into place, so an interrupted analysis leaves the previous one (or
nothing) rather than half of a new one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots, stats
from analysis.load import NORMALISED, AnalysisError, Results, higher_is_better, load_results
from analysis.report import Figure, Report, Section, Table
from analysis.tables import number, pvalue, with_interval, write_table
from study.store.format import pid_alive, write_text

MARKER = "analysis.json"
STAT_NAMES = {"mean": "mean", "median": "median", "iqm": "IQM", "optimality_gap": "optimality gap"}
KL_METRICS = ("kl_student", "kl_teacher", "kl_uniform")
# what a network student's evaluations record of its imitation, on the states it visits (study.network.loop)
IMITATION_METRICS = ("agreement", "kl_student")


@dataclass
class Options:
    """What `distill analyze` computes; every random draw follows ``seed``."""

    metric: str = NORMALISED
    baseline: str | None = None
    factors: list[str] | None = None
    facet: str | None = None
    reps: int = 2000
    level: float = 0.95
    threshold: float = 0.9
    permutations: int = 2000
    plan_seeds: bool = False
    delta: float | None = None
    power: float = 0.8
    alpha: float = 0.05
    seed: int = 0


@dataclass
class Outcome:
    """Where the report was written, the cells counted by status, and the headline findings the CLI prints."""

    out: Path
    report_md: Path
    report_html: Path
    done: int
    failed: int
    missing: int
    headline: list[str] = field(default_factory=list)


def check_options(results: Results, opt: Options) -> Options:
    """Refuse options the study cannot answer, naming what is allowed (before anything is written)."""
    if results.metrics and opt.metric not in results.metrics:
        raise AnalysisError(f"--metric {opt.metric!r}: not recorded in {results.root}; allowed: "
                            f"{', '.join(results.metrics)}")
    if opt.baseline is not None and opt.baseline not in results.arms:
        raise AnalysisError(f"--baseline {opt.baseline!r}: not a variant of study {results.name!r}; allowed: "
                            f"{'; '.join(results.arms)}")
    if opt.baseline is not None and len(results.runs) and not (results.runs["arm"] == opt.baseline).any():
        raise AnalysisError(f"--baseline {opt.baseline!r}: has no finished runs yet; allowed: an arm with "
                            f"finished runs: {'; '.join(dict.fromkeys(results.runs['arm']))}")
    allowed = results.factors
    if opt.factors is not None:
        bad = [f for f in opt.factors if f not in allowed]
        if bad or not opt.factors:
            raise AnalysisError(f"--factors {','.join(opt.factors)}: {', '.join(bad) or 'empty'} is not a factor "
                                f"of study {results.name!r}; allowed: {', '.join(allowed) or 'none (no key varies)'}")
    if opt.facet is not None and opt.facet not in [*allowed, "task"]:
        raise AnalysisError(f"--facet {opt.facet!r}: allowed: {', '.join([*allowed, 'task'])}")
    checks = [("reps", opt.reps >= 100, "a whole number >= 100"),
              ("level", 0 < opt.level < 1, "between 0 and 1"),
              ("permutations", opt.permutations >= 99, "a whole number >= 99"),
              ("threshold", math.isfinite(opt.threshold), "a finite number"),
              ("power", 0 < opt.power < 1, "between 0 and 1"),
              ("alpha", 0 < opt.alpha < 1, "between 0 and 1"),
              ("delta", opt.delta is None or (math.isfinite(opt.delta) and opt.delta > 0), "a number > 0")]
    for name, ok, allowed_text in checks:
        if not ok:
            raise AnalysisError(f"--{name} {getattr(opt, name)!r}: out of range; allowed: {allowed_text}")
    return opt


def prepare_out(root: Path, out: Path | None) -> Path:
    """The destination: new, or a folder an earlier analysis wrote (never another folder's contents)."""
    out = Path(out) if out is not None else Path(root) / "analysis"
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise AnalysisError(f"--out {out}: exists and was not written by `distill analyze`; allowed: a new "
                            "folder, or one an earlier analysis wrote (it is replaced)")
    return out


def analyze(root: Path, out: Path | None = None, options: Options | None = None,
            progress: Callable[[str], None] | None = None) -> Outcome:
    """Load, compute, draw and write; returns where the report is."""
    opt = options or Options()
    results = load_results(Path(root))
    check_options(results, opt)
    out = prepare_out(results.root, out)
    say = progress or (lambda _msg: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-tmp-{os.getpid()}-", dir=out.parent))
    try:
        report, headline = _build(results, opt, tmp, say)
        (tmp / "report.md").write_text(report.markdown(tmp))
        (tmp / "report.html").write_text(report.html())
        (tmp / MARKER).write_text(json.dumps({"study": results.name, "root": str(results.root),
                                              "options": asdict(opt)}, indent=2))
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = results.cells["status"].value_counts()
    return Outcome(out, out / "report.md", out / "report.html", int(counts.get("done", 0)),
                   int(counts.get("failed", 0)), int(counts.get("missing", 0) + counts.get("running", 0)),
                   headline)


def _clean_stale(out: Path) -> None:
    """Remove what an analysis killed mid-write left beside ``out`` (its process is gone)."""
    for prefix in (f".{out.name}-tmp-", f".{out.name}-old-"):
        for path in out.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix):].split("-")[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def _swap(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---- the report ---------------------------------------------------------------------------------------


def _build(results: Results, opt: Options, out: Path, say: Callable[[str], None]) -> tuple[Report, list[str]]:
    tables, figures = out / "tables", out / "figures"
    tables.mkdir()
    figures.mkdir()
    report = Report(f"Study {results.name}: analysis")
    headline: list[str] = []
    metric = opt.metric
    runs = results.runs
    done = results.cells["status"].eq("done").sum()

    intro = report.section("Study")
    counts = results.counts()
    total = counts[["done", "failed", "running", "missing"]].sum()
    intro.add(f"Folder `{results.root}`, tier {results.tier}. Cells: {total['done']} done, {total['failed']} "
              f"failed, {total['running']} running, {total['missing']} missing of {len(results.cells)}. "
              f"Runs (trained students) analysed: {len(runs)}. Arms compared: {len(results.arms)}; tasks: "
              f"{len(results.tasks)} ({', '.join(results.tasks)}).")
    resampled = ("the MDPs of each task (every seed trains on the same MDPs), then the seeds within each "
                 "drawn MDP" if results.clustered else "the seeds within each task")
    intro.add(f"Metric: `{metric}` ({'higher' if higher_is_better(metric) else 'lower'} is better). "
              f"Intervals: {opt.level:.0%} bootstrap resampling {resampled}; {opt.reps} resamples, seed "
              f"{opt.seed}. Tests, the ANOVA and seed planning use {results.unit_name} as independent units"
              + (" (each MDP's seeds averaged)." if results.clustered else "."))
    if results.task_keys or results.arm_keys:
        intro.add(f"Arms differ in: {', '.join(results.arm_keys) or 'nothing'}; tasks differ in: "
                  f"{', '.join(results.task_keys) or 'nothing'}.")
    intro.add(_table(tables, "status", counts, counts, "Cells per arm by status"))
    if total["failed"] or total["missing"] or total["running"]:
        headline.append(f"{total['failed']} failed and {total['missing'] + total['running']} unfinished cells "
                        "are counted in the status table and left out of the statistics")
    if results.errors:
        failed = results.cells[results.cells["status"] == "failed"][["cell", "arm", "task", "seed"]].copy()
        failed["error"] = failed["cell"].map(results.errors)
        intro.add(_table(tables, "failed", failed, failed, "Failed cells (error.json in each cell folder)"))
    if done == 0 or runs.empty:
        intro.add("No finished cells yet: nothing to compare. Run `distill grid run` on the study, then analyse "
                  "again.")
        return report, headline

    compared = _common_tasks(results, intro, headline)
    say("aggregates")
    _aggregates(report, results, compared, opt, tables, figures, headline)
    say("probability of improvement")
    _improvement(report, results, compared, opt, tables, figures)
    say("pairwise tests")
    _tests(report, results, opt, tables, headline)
    say("factorial ANOVA")
    _anova(report, results, compared, opt, tables, figures, headline)
    say("learning curves")
    _curves(report, results, opt, tables, figures)
    if opt.plan_seeds:
        say("seed planning")
        _seed_plan(report, results, opt, tables)
    return report, headline


def _common_tasks(results: Results, intro: Section, headline: list[str]) -> pd.DataFrame:
    """The runs on tasks every arm has finished runs on: comparing an arm's easy tasks with another's
    hard ones would compare the tasks, not the arms."""
    runs = results.runs
    have = runs.groupby("task", observed=True)["arm"].nunique()
    with_runs = runs["arm"].nunique()
    common = [t for t in results.tasks if have.get(t, 0) == with_runs]
    if len(common) == runs["task"].nunique():
        return runs
    if not common:
        intro.add("**No task has finished runs of every arm**: the aggregate comparisons below pool each arm's "
                  "own tasks and are confounded with the tasks; read the per-task table instead.")
        headline.append("no task has runs of every arm: aggregates are confounded with tasks")
        return runs
    left = sorted(set(results.tasks) - set(common))
    intro.add(f"**Arms cover different tasks.** Aggregates, probabilities of improvement, profiles and the "
              f"heatmap use the {len(common)} task(s) every arm ran ({', '.join(common)}); "
              f"{', '.join(left)} appear only in the per-task table and the tests.")
    headline.append(f"aggregates use the tasks every arm ran: {', '.join(common)}")
    return runs[runs["task"].isin(common)]


def _table(folder: Path, name: str, data: pd.DataFrame, display: pd.DataFrame, caption: str) -> Table:
    write_table(folder, name, data, display, caption)
    return Table(display, caption, f"tables/{name}.csv, .md, .tex")


def _figure(paths: list[Path], caption: str) -> Figure:
    return Figure(next(p for p in paths if p.suffix == ".png"), caption)


def _for_plot(frame: pd.DataFrame, results: Results, facet: str | None = None) -> pd.DataFrame:
    """Figures colour by ``variant``: the arm's colour key for the facet (:meth:`Results.colour_keys`).
    Arms without a facet value (include cells) get their own row."""
    frame = frame.drop(columns=[c for c in ("variant",) if c in frame]).rename(columns={"arm": "variant"})
    if facet and facet in frame and frame[facet].isna().any():
        frame = frame.assign(**{facet: frame[facet].astype(object).where(frame[facet].notna(), "unset")})
    keys = results.colour_keys(facet)
    return frame.assign(variant=[keys[str(arm)] for arm in frame["variant"]])


def _plot_arms(results: Results, facet: str | None) -> list[str]:
    """The colour keys of the faceted figures, in the arms' order."""
    keys = results.colour_keys(facet)
    return list(dict.fromkeys(keys[arm] for arm in results.arms))


def _aggregates(report: Report, results: Results, runs: pd.DataFrame, opt: Options, tables: Path, figures: Path,
                headline: list[str]) -> None:
    metric = opt.metric
    normalised = metric == NORMALISED
    names = list(stats.AGGREGATES) if normalised else ["mean", "median", "iqm"]
    agg = stats.aggregates(runs, metric, results.arms, statistics=names, reps=opt.reps, level=opt.level,
                           seed=opt.seed)
    sec = report.section("Aggregate scores")
    if normalised:
        sec.add("Scores are normalised per run between the random policy (0; the uniform policy in the tabular "
                "tier) and the teacher (1). The optimality gap is the mean shortfall below the teacher's score.")
    sec.add("The median is the median over tasks of each task's mean over its runs (Agarwal et al. 2021, as "
            "rliable computes it): with one task it equals the mean. The IQM and the optimality gap pool the runs.")
    display = pd.DataFrame({"arm": results.arms})
    for name in names:
        sub = agg[agg["statistic"] == name].set_index("arm")
        display[STAT_NAMES[name]] = [with_interval(*sub.loc[a, ["estimate", "lo", "hi"]]) for a in results.arms]
    display["runs"] = [int(agg[(agg["arm"] == a)]["runs"].iloc[0]) for a in results.arms]
    sec.add(_table(tables, "aggregates", agg, display,
                   f"{metric}: estimate [{opt.level:.0%} percentile interval]; BCa intervals in the CSV "
                   f"(left out above {stats.JACKKNIFE_UNITS} units)"))
    reference = None
    if normalised and runs["optimal_norm"].notna().any():
        finite = runs[np.isfinite(runs["optimal_norm"].to_numpy(dtype=float))]
        reference = {name: stats.estimate(finite["optimal_norm"], finite["task"].astype(str), stats.AGGREGATES[name])
                     for name in ("mean", "median", "iqm")}
        sec.add(f"The optimal policy scores {number(reference['mean'])} on this scale (mean over runs; the "
                "dashed line in the figure): a teacher that is not optimal leaves room above 1.")
    refs = _references(results)
    if refs is not None:
        where = "task and arm (the arms' teachers differ)" if "arm" in refs else "task"
        sec.add(_table(tables, "references", refs, refs, f"Reference scores per {where} (mean over runs)"))
    table = agg.rename(columns={"arm": "variant"})
    sec.add(_figure(plots.aggregate_intervals(table, figures / "aggregates", variants=results.arms,
                                              statistics=tuple(names), reference=reference,
                                              xlabel="normalised score" if normalised else metric),
                    f"Aggregate {metric} per arm with {opt.level:.0%} stratified-bootstrap intervals"))
    if higher_is_better(metric):
        lo, hi = np.nanquantile(runs[metric].to_numpy(dtype=float), [0.0, 1.0])
        if normalised:
            lo, hi = min(lo, 0.0), max(hi, 1.0)
        profile = stats.performance_profile(runs, metric, results.arms, np.linspace(lo, hi, 101), reps=opt.reps,
                                            level=opt.level, seed=opt.seed)
        write_text(tables / "profiles.csv", profile.to_csv(index=False))
        sec.add(_figure(plots.performance_profiles(profile.rename(columns={"arm": "variant"}),
                                                   figures / "profiles", variants=results.arms,
                                                   xlabel=f"{metric} threshold"),
                        "Performance profiles: fraction of runs scoring above each threshold, with bootstrap bands"))
    final = final_metrics(results, opt)
    sec.add(_table(tables, "final", final, _final_display(final, results),
                   f"Every recorded metric at the end of training: mean over runs [{opt.level:.0%} stratified "
                   "bootstrap interval]"))
    if len(results.tasks) > 1:
        per_task = _per_task(runs, metric, results, opt)
        sec.add(_table(tables, "per_task", per_task, per_task,
                       f"Mean {metric} per arm and task [{opt.level:.0%} bootstrap interval]"))
    iqms = agg[agg["statistic"] == "iqm"].dropna(subset=["estimate"]).set_index("arm")
    if len(iqms) > 1:
        best = iqms["estimate"].idxmax() if higher_is_better(metric) else iqms["estimate"].idxmin()
        row = iqms.loc[best]
        others = iqms.drop(index=best)
        overlap = bool(((others["hi"] >= row["lo"]) & (others["lo"] <= row["hi"])).any())
        text = (f"highest IQM {metric}: {best} {with_interval(row['estimate'], row['lo'], row['hi'])}"
                if higher_is_better(metric) else
                f"lowest IQM {metric}: {best} {with_interval(row['estimate'], row['lo'], row['hi'])}")
        text += " (its interval overlaps another arm's)" if overlap else " (no other arm's interval overlaps)"
        headline.append(text)
        sec.add(text[0].upper() + text[1:] + ".")


def final_metrics(results: Results, opt: Options) -> pd.DataFrame:
    """Mean of every recorded metric at the last evaluation, per arm, with stratified intervals."""
    rows = []
    for arm in results.arms:
        sub = results.runs[results.runs["arm"] == arm]
        for metric in _metric_order(results.metrics):
            iv = stats.interval(sub[metric], sub["task"].astype(str), stats.mean, reps=opt.reps, level=opt.level,
                                seed=opt.seed, name=f"final|{arm}|{metric}", clusters=sub["instance"])
            rows.append({"arm": arm, "metric": metric, "mean": iv.estimate, "lo": iv.lo, "hi": iv.hi})
    return pd.DataFrame(rows)


def _metric_order(metrics: list[str]) -> list[str]:
    first = [m for m in (NORMALISED, *KL_METRICS, "agreement", "return") if m in metrics]
    return first + [m for m in metrics if m not in first]


def _final_display(final: pd.DataFrame, results: Results) -> pd.DataFrame:
    display = pd.DataFrame({"arm": results.arms})
    for metric in _metric_order(results.metrics):
        sub = final[final["metric"] == metric].set_index("arm")
        display[metric] = [with_interval(*sub.loc[a, ["mean", "lo", "hi"]]) for a in results.arms]
    return display


def _references(results: Results) -> pd.DataFrame | None:
    runs = results.runs
    cols = [c for c in ("random_score", "teacher_score", "optimal_score", "optimal_norm") if c in runs]
    if not cols or runs[cols].isna().all().all():
        return None
    per_task = runs.groupby("task", observed=True)[cols].mean().reindex(results.tasks).reset_index()
    if "teacher_score" not in runs:
        return per_task
    per_arm = runs.groupby(["task", "arm"], observed=True, sort=False)[cols].mean().reset_index()
    order = {arm: i for i, arm in enumerate(results.arms)}
    per_arm = per_arm.sort_values("arm", key=lambda a: a.map(order), kind="stable").reset_index(drop=True)
    # where an arm's factor changes the teacher (its temperature, its noise), each arm's teacher is shown
    spread = per_arm.groupby("task", observed=True)["teacher_score"].agg(lambda x: x.max() - x.min())
    scale = per_arm["teacher_score"].abs().max()
    return per_arm if bool((spread > 1e-9 * max(1.0, scale)).any()) else per_task


def _per_task(runs: pd.DataFrame, metric: str, results: Results, opt: Options) -> pd.DataFrame:
    table = pd.DataFrame({"arm": results.arms})
    for task in results.tasks:
        col = []
        for arm in results.arms:
            sub = runs[(runs["arm"] == arm) & (runs["task"] == task)]
            iv = stats.interval(sub[metric], None, stats.mean, reps=opt.reps, level=opt.level, seed=opt.seed,
                                name=f"{arm}|{task}", clusters=sub["instance"])
            col.append(with_interval(iv.estimate, iv.lo, iv.hi))
        table[task] = col
    return table


def _improvement(report: Report, results: Results, runs: pd.DataFrame, opt: Options, tables: Path,
                 figures: Path) -> None:
    if len(results.arms) < 2:
        return
    poi = stats.improvement_matrix(runs, opt.metric, results.arms,
                                   higher_is_better=higher_is_better(opt.metric), reps=opt.reps, level=opt.level,
                                   seed=opt.seed)
    sec = report.section("Probability of improvement")
    where = "MDP" if results.clustered else "task"
    sec.add(f"P(X > Y): the chance that a run of arm X beats a run of arm Y on the same {where} (ties count "
            f"half), averaged over {where}s{' and then tasks' if results.clustered else ''}; above 0.5 favours "
            "X." + (" Intervals resample the MDPs (the same draw for both arms) and each arm's seeds within them."
                    if results.clustered else " Intervals resample both arms' seeds within each task."))
    display = poi.copy()
    display["P(x > y)"] = [with_interval(*r) for r in poi[["poi", "lo", "hi"]].to_numpy()]
    display = display[["x", "y", "P(x > y)"]]
    if opt.baseline:
        display = display[display["y"] == opt.baseline]
    else:  # one direction per pair; the CSV has both
        order = {a: i for i, a in enumerate(results.arms)}
        display = display[[order[x] < order[y] for x, y in zip(display["x"], display["y"], strict=True)]]
    sec.add(_table(tables, "improvement", poi, display.reset_index(drop=True),
                   "Probability of improvement" + (f" over {opt.baseline}" if opt.baseline else "")))
    sec.add(_figure(plots.poi_matrix(poi, figures / "improvement", variants=results.arms),
                    "Probability that the row's arm improves on the column's"))


def _tests(report: Report, results: Results, opt: Options, tables: Path, headline: list[str]) -> None:
    if len(results.arms) < 2:
        return
    units = results.units(opt.metric)
    tests = stats.pairwise_tests(units, opt.metric, results.arms, baseline=opt.baseline)
    tests = tests[(tests["n_a"] > 0) & (tests["n_b"] > 0)].reset_index(drop=True)  # pairs that never met
    if tests.empty:
        return
    tested = int(tests["p_t"].notna().sum())
    sec = report.section("Pairwise tests")
    family = "each arm against " + opt.baseline if opt.baseline else "every pair of arms"
    sec.add(f"Welch's t and Mann-Whitney U, {family}, within each task, over {results.unit_name}"
            + (" (each MDP's seeds averaged, since all seeds share the MDPs)" if results.clustered else "")
            + f"; p-values Holm-corrected across the {tested} comparisons with at least two units a side. "
            "Hedges' g and Cliff's delta are positive when the first arm scores higher.")
    display = pd.DataFrame({
        "task": tests["task"], "a": tests["a"], "b": tests["b"], "n a": tests["n_a"], "n b": tests["n_b"],
        "mean a": tests["mean_a"], "mean b": tests["mean_b"],
        "Welch p (Holm)": [pvalue(p) for p in tests["p_t_holm"]],
        "MWU p (Holm)": [pvalue(p) for p in tests["p_u_holm"]], "Hedges g": tests["hedges_g"],
        "Cliff delta": tests["cliffs_delta"]})
    if len(results.tasks) == 1:
        display = display.drop(columns="task")
    sec.add(_table(tables, "tests", tests, display, "Pairwise tests"))
    both = int(((tests["p_t_holm"] < opt.alpha) & (tests["p_u_holm"] < opt.alpha)).sum())
    text = f"{both} of {tested} comparisons differ at alpha {opt.alpha} in both tests after Holm's correction."
    sec.add(text)
    headline.append(text)


def _anova(report: Report, results: Results, runs: pd.DataFrame, opt: Options, tables: Path, figures: Path,
           headline: list[str]) -> None:
    factors = opt.factors or results.factors
    if not factors:
        return
    units = results.units(opt.metric)
    block = None
    if results.clustered and not set(factors) & set(results.task_keys):
        # arms share the MDPs: partial each MDP out (a task factor varies between MDPs, so it cannot be)
        units = units.assign(environment=units["task"].astype(str) + "|" + units["unit"].astype(str))
        block = "environment"
    table = stats.anova(units, opt.metric, factors, permutations=opt.permutations, seed=opt.seed, block=block)
    if table.empty:
        return
    used = [t for t in table["term"] if t != "Residual" and ":" not in t]
    sec = report.section("Factorial ANOVA")
    with_interactions = " with their interactions" if len(used) > 1 else ""
    sec.add(f"Type II sums of squares over {', '.join(used)}{with_interactions} ({opt.metric} of "
            f"{results.unit_name}"
            + ("; the MDP is a block, partialled out of every model, since every arm trained on the same MDPs"
               if block else "")
            + ("; no MDP block, since a task factor varies between MDPs" if results.clustered and not block else "")
            + f"), partial eta squared, and a Freedman-Lane permutation test ({opt.permutations} permutations) "
            "that does not assume normal errors: returns are often heavy-tailed.")
    dropped = table.attrs.get("dropped", 0)
    if dropped:
        sec.add(f"{dropped} units of arms that do not set every factor (cells added by an include rule) are left "
                "out of the ANOVA.")
    display = table.copy()
    display["p"] = [pvalue(p) for p in table["p"]]
    display["p (permutation)"] = [pvalue(p) for p in table["p_perm"]]
    display = display[["term", "df", "sum_sq", "F", "p", "p (permutation)", "partial_eta_sq"]]
    sec.add(_table(tables, "anova", table, display, "Factorial ANOVA (type II)"))
    terms = table[table["term"] != "Residual"]
    matter = terms[(terms["p"] < opt.alpha) & (terms["p_perm"] < opt.alpha)].sort_values(
        "partial_eta_sq", ascending=False)
    if matter.empty:
        text = f"No factor or interaction reaches p < {opt.alpha} in both tests."
    else:
        parts = [f"{'interaction ' if ':' in t else ''}{t.replace(':', ' x ')} (partial eta^2 {e:.2f})"
                 for t, e in zip(matter["term"], matter["partial_eta_sq"], strict=True)]
        text = f"What matters (p < {opt.alpha} in the F and the permutation test), largest first: " + \
            "; ".join(parts) + "."
    sec.add(text)
    headline.append(text)
    pair = used[:2] if opt.factors is None else [f for f in opt.factors if f in used][:2]
    if len(pair) == 2:
        data = runs[[*pair, opt.metric]].dropna()
        sec.add(_figure(plots.interaction_heatmap(data, figures / "interaction", row=pair[0], col=pair[1],
                                                  value=opt.metric, title=f"mean {opt.metric}"),
                        f"Interaction of {pair[0]} and {pair[1]}: mean {opt.metric} per combination"))


def _curves(report: Report, results: Results, opt: Options, tables: Path, figures: Path) -> None:
    curves = results.curves
    facet = opt.facet or ("task" if len(results.tasks) > 1 else None)
    sec = report.section("Learning curves")
    frame = _for_plot(curves[curves["metric"] == opt.metric], results, facet)
    shown = _plot_arms(results, facet)
    x_label = "iteration" if results.tier == "tabular" else "agent steps (per game)"
    sec.add(_figure(plots.learning_curves(frame, [opt.metric], figures / "curves", variants=shown,
                                          facet=facet, x_label=x_label),
                    f"{opt.metric} along training: mean over runs with a 95% bootstrap band"))
    if results.tier == "tabular" and set(KL_METRICS) <= set(results.metrics):
        kl = _for_plot(curves[curves["metric"].isin([*KL_METRICS, NORMALISED])], results, facet)
        sec.add(_figure(plots.tabular_kl_layout(kl, figures / "kl_layout", variants=shown, facet=facet),
                        "KL(pi_T || pi_theta) under the student's, the teacher's and the uniform state "
                        "distribution, beside the normalised return (Czarnecki et al. 2019, Fig. 3 layout)"))
    imitation = [m for m in IMITATION_METRICS if m in results.metrics and m != opt.metric]
    if results.tier != "tabular" and imitation:
        data = _for_plot(curves[curves["metric"].isin([opt.metric, *imitation])], results, facet)
        sec.add(_figure(plots.learning_curves(data, [opt.metric, *imitation], figures / "imitation", variants=shown,
                                              facet=facet, x_label=x_label),
                        f"{opt.metric} beside how closely the student imitates the teacher on the states it visits "
                        "itself: argmax agreement and KL(pi_T || pi_theta), along training"))
    rows = []
    auc = stats.curve_metrics(curves, opt.metric)
    reach = stats.curve_metrics(curves, NORMALISED, threshold=opt.threshold) if NORMALISED in results.metrics \
        else None
    keys = results.runs[["cell", "mdp", "instance", "arm", "task"]]
    auc = auc.merge(keys, on=["cell", "mdp"])
    if reach is not None:
        reach = reach.merge(keys, on=["cell", "mdp"])
    # over all tasks, then per task when there are several (a pooled median hides how each task behaves)
    scopes: list[str | None] = [None] + (list(results.tasks) if len(results.tasks) > 1 else [])
    for task in scopes:
        for arm in results.arms:
            tag = arm if task is None else f"{arm}|{task}"
            a = auc[(auc["arm"] == arm) & ((auc["task"] == task) if task is not None else True)]
            if a.empty:
                continue
            iv = stats.interval(a["auc"], a["task"].astype(str), stats.mean, reps=opt.reps, level=opt.level,
                                seed=opt.seed, name=f"auc|{tag}", clusters=a["instance"])
            row = {"arm": arm, "task": "pooled" if task is None else task, "auc": iv.estimate, "auc_lo": iv.lo,
                   "auc_hi": iv.hi}
            if reach is not None:
                r = reach[(reach["arm"] == arm) & ((reach["task"] == task) if task is not None else True)]
                steps = r["steps_to_threshold"].fillna(np.inf).to_numpy(dtype=float)
                med = stats.interval(steps, r["task"].astype(str), stats.run_median, reps=opt.reps, level=opt.level,
                                     seed=opt.seed, name=f"reach|{tag}", clusters=r["instance"])
                row.update(reached=float(np.isfinite(steps).mean()) if len(steps) else np.nan,
                           steps_median=med.estimate, steps_lo=med.lo, steps_hi=med.hi)
            rows.append(row)
    data = pd.DataFrame(rows)
    display = pd.DataFrame({"arm": data["arm"],
                            f"AUC of {opt.metric}": [with_interval(*r) for r in
                                                     data[["auc", "auc_lo", "auc_hi"]].to_numpy()]})
    if len(scopes) > 1:
        display.insert(1, "task", data["task"])
    caption = f"Area under the {opt.metric} curve (its average over training)"
    if reach is not None:
        display[f"fraction of runs reaching {opt.threshold:g}"] = data["reached"]
        display[f"median steps over runs to {opt.threshold:g} x teacher"] = [
            with_interval(*r) for r in data[["steps_median", "steps_lo", "steps_hi"]].to_numpy()]
        caption += (f"; steps until the normalised return first reaches {opt.threshold:g} of the teacher's "
                    "(∞: more than half the runs never do)")
    if len(scopes) > 1:
        caption += "; over all tasks (task pooled), then per task"
    sec.add(_table(tables, "curve_metrics", data, display, caption))


def _seed_plan(report: Report, results: Results, opt: Options, tables: Path) -> None:
    plan = stats.plan_seeds(results.units(opt.metric), opt.metric, results.arms, delta=opt.delta,
                            baseline=opt.baseline, power=opt.power, alpha=opt.alpha)
    unit = results.unit_name
    sec = report.section("Seed planning")
    target = f"a difference of {opt.delta:g}" if opt.delta else "the difference this pilot observed"
    sec.add(f"{unit.capitalize()} per arm and task for a two-sided t-test to detect {target} in {opt.metric} with "
            f"power {opt.power:g} at alpha {opt.alpha:g}, Bonferroni-corrected over the {len(plan)} comparisons "
            f"(pairs x tasks, as the tests); the spread is the pilot's pooled within-task standard deviation of "
            f"{unit}"
            + (". In the tabular tier the units are MDPs (every seed trains on the same ones): more MDPs, not "
               "more seeds, narrow the comparison." if results.clustered else "."))
    if plan.empty:
        sec.add("Too few units per arm in the pilot to estimate a spread.")
        return
    display = plan.rename(columns={"units_needed": f"{unit} needed", "pilot_units": f"pilot {unit}"})
    if len(results.tasks) == 1:
        display = display.drop(columns="task")
    sec.add(_table(tables, "seed_plan", plan, display, f"{unit.capitalize()} needed"))
