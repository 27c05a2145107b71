"""The `distill` command line."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from analysis.load import AnalysisError
from study.network.envs import EnvError
from study.network.rl.common import DeviceError
from study.network.teacher import TeacherError
from study.spec import StudyError
from study.store.format import OutputError, check_writable_file, write_json
from study.tabular.mdp import MDPError
from variants import VariantError

app = typer.Typer(
    help="A comparative study harness for policy-distillation variants.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks (speed targets live here, not in tests).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
grid_app = typer.Typer(help="Factorial study grids from TOML files.", no_args_is_help=True)
app.add_typer(grid_app, name="grid")
teacher_app = typer.Typer(help="Teachers of the network tiers: train (DQN, PPO) and evaluate.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")

out = Console()
err = Console(stderr=True)


class UsageError(ValueError):
    """Bad input from the command line."""


def cli_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input exits with status 2 and a message that names the problem."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (VariantError, MDPError, UsageError, OutputError, StudyError, AnalysisError, EnvError,
                TeacherError, DeviceError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # an output path that cannot be written
            err.print(f"[bold red]error:[/] {exc.filename or ''}: {exc.strerror or exc}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; nothing was written")
            raise typer.Exit(130) from None

    return wrapper


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


@app.command("variants", epilog="Example: distill variants --json")
@cli_errors
def variants_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """List the named variants: control, loss, pseudo-reward, gradient field, reference."""
    from variants import CATALOGUE

    rows = [entry.to_dict() for entry in CATALOGUE.values()]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="distillation variants")
    for col in ("name", "control", "loss", "reward", "gradient field", "reference"):
        table.add_column(col, overflow="fold")
    for r in rows:
        reward = r["reward"] + (" +R" if r["env_reward"] else "") + (" +V cond" if r["v_cond"] else "")
        table.add_row(r["name"], r["control"], r["loss"], reward, "yes" if r["gradient_field"] else "no",
                      r["reference"])
    out.print(table)


@app.command("claims", epilog="Example: distill claims --quick --json claims.json")
@cli_errors
def claims_cmd(
    quick: Annotated[bool, typer.Option("--quick", help="A smaller version (seconds instead of minutes).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the verdicts and evidence here.")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this claim (repeatable).")] = None,
    figures: Annotated[Path | None, typer.Option(help="Also draw the Fig. 2 toy's phase portrait into this "
                                                     "folder (fig2_toy.png and .pdf).")] = None,
) -> None:
    """Check the papers' convergence claims on toy MDPs; exit 0 only if every claim holds."""
    import torch

    from study.tabular.claims import CLAIMS, run_claims

    keys = [c.key for c in CLAIMS]
    for key in only or []:
        if key not in keys:
            raise UsageError(f"--only: unknown claim {key!r}; allowed: {', '.join(keys)}")
    if json_path is not None:
        check_writable_file(json_path)
    if figures is not None and figures.exists() and not figures.is_dir():
        raise UsageError(f"--figures {figures}: is a file; allowed: a folder (created if missing)")
    torch.set_num_threads(1)
    todo = [c for c in CLAIMS if not only or c.key in only]
    with _progress() as bar:
        task = bar.add_task("checking claims", total=len(todo))
        results = run_claims(quick=quick, only=only, on_done=lambda r: bar.advance(task))
    table = Table(title="claims" + (" (quick)" if quick else ""), show_lines=True)
    for col in ("claim", "reference", "holds", "evidence"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(r.claim, r.reference, "[green]yes[/]" if r.holds else "[red]no[/]", r.summary)
    out.print(table)
    if json_path is not None:
        write_json(json_path, {"quick": quick, "claims": [r.to_dict() for r in results]})
        out.print(f"wrote {json_path}")
    if figures is not None:
        from study.tabular.claims import toy_phase_portrait

        figures.mkdir(parents=True, exist_ok=True)
        with err.status("drawing the Fig. 2 toy's phase portrait"):
            written = toy_phase_portrait(figures / "fig2_toy", quick=quick)
        out.print(f"wrote {', '.join(str(p) for p in written)}")
    failed = [r.key for r in results if not r.holds]
    if failed:
        out.print(f"[red]{len(failed)} of {len(results)} claims do not hold:[/] {', '.join(failed)}")
        raise typer.Exit(1)
    out.print(f"all {len(results)} claims hold")


@app.command("demo", epilog="Example: distill demo --out results/demo")
@cli_errors
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Results folder of the demo study.")] = Path("results/demo"),
    mdps: Annotated[int | None, typer.Option(help="Number of grid worlds (default: the demo study's).")] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per grid world and variant (default: the study's).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Training iterations (default: the study's).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel workers (default: one per core).")] = None,
) -> None:
    """Run the built-in demo study (7 variants, 20 grid worlds x 3 seeds) through the grid runner, then
    analyse it (`distill analyze`) and print where the report is. Interrupted, it resumes where it stopped."""
    from study.cli.demo import demo_study, run_demo
    from study.run.runner import RunReport

    for name, value in (("mdps", mdps), ("seeds", seeds), ("iterations", iterations), ("workers", workers)):
        if value is not None and value < 1:
            raise UsageError(f"--{name}: {value} is out of range; allowed: {name} >= 1")
    study = demo_study(mdps=mdps, seeds=seeds, iterations=iterations)
    with _progress() as bar:
        task = bar.add_task("demo cells", total=None)

        def update(r: RunReport) -> None:
            bar.update(task, total=r.total - r.skipped, completed=len(r.done) + len(r.failed),
                       description=f"demo cells: {len(r.done)} done, {len(r.failed)} failed, {r.left} left")

        try:
            report, outcome = run_demo(out_dir, study, workers=workers, progress=update)
        except KeyboardInterrupt:
            err.print(f"interrupted; finished cells are kept in {out_dir}; run the same command to resume",
                      soft_wrap=True)
            raise typer.Exit(130) from None
    out.print(_final_table(outcome.out / "tables" / "final.csv"))
    if report.failed:
        out.print(f"[red]{len(report.failed)} cells failed[/]: distill grid status {out_dir}")
    out.print(f"cells:  {out_dir}/<cell id>/ (config, metrics.parquet, summary, provenance)")
    out.print(f"report: {outcome.report_html} (and report.md, tables/, figures/)")


@bench_app.command("tabular", epilog="Example: distill bench tabular --mdps 1000 --loop-mdps 100")
@cli_errors
def bench_tabular_cmd(
    mdps: Annotated[int, typer.Option(help="Grid worlds in the batch.")] = 1000,
    size: Annotated[int, typer.Option(help="Grid side.")] = 20,
    iterations: Annotated[int, typer.Option(help="Iterations per run (the first is not timed).")] = 6,
    loop_mdps: Annotated[int | None, typer.Option(help="MDPs the per-MDP loop covers (default: all).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
) -> None:
    """The batched sampled engine against a per-MDP loop on the same work, in MDP-iterations/s."""
    from study.bench import bench_tabular

    for name, value, low in (("mdps", mdps, 1), ("size", size, 3), ("iterations", iterations, 2),
                             ("loop-mdps", loop_mdps if loop_mdps is not None else 1, 1)):
        if value < low:
            raise UsageError(f"--{name}: {value} is out of range; allowed: {name} >= {low}")
    if json_path is not None:
        check_writable_file(json_path)
    total = mdps if loop_mdps is None else min(loop_mdps, mdps)
    with _progress() as bar:
        task = bar.add_task("per-MDP loop", total=total)
        result = bench_tabular(mdps=mdps, size=size, iterations=iterations, loop_mdps=loop_mdps,
                               progress=lambda done: bar.update(task, completed=done))
    table = Table(title=f"tabular engine: {mdps} grid worlds {size}x{size}, sampled on-policy distill")
    for col in ("engine", "MDPs", "timed iterations", "seconds", "MDP-iterations/s"):
        table.add_column(col)
    timed = iterations - 1
    table.add_row("batched", str(mdps), str(timed), f"{result.batched_seconds:.2f}", f"{result.batched_rate:,.0f}")
    table.add_row("per-MDP loop", str(result.loop_mdps), str(timed), f"{result.loop_seconds:.2f}",
                  f"{result.loop_rate:,.0f}")
    out.print(table)
    out.print(f"speed-up: {result.ratio:.1f}x (target: >= 50x at 1000 MDPs)")
    out.print(f"projected Fig. 3 scale (1000 grid worlds x 30,000 iterations): "
              f"{result.fig3_hours_per_curve:.2f} h per curve, {result.fig3_hours_all_curves:.1f} h for its 9 curves")
    out.print(f"machine: {result.machine}")
    if json_path is not None:
        write_json(json_path, dataclasses.asdict(result))


def _final_table(csv: Path) -> Table:
    """Final metrics per arm as a terminal table of means (the intervals are in the report)."""
    import pandas as pd

    final = pd.read_csv(csv)
    wide = final.pivot(index="arm", columns="metric", values="mean").reindex(list(dict.fromkeys(final["arm"])))
    headers = {"return_norm": "return", "kl_student": "KL stu.", "kl_teacher": "KL tea.",
               "kl_uniform": "KL uni.", "agreement": "agree"}
    metrics = [m for m in headers if m in wide.columns]
    table = Table(title="final metrics: mean over runs (intervals in the report)")
    table.add_column("variant", overflow="fold", max_width=22)
    for metric in metrics:
        table.add_column(headers[metric], justify="right", no_wrap=True, min_width=6)
    for arm, r in wide.iterrows():
        table.add_row(str(arm), *(f"{r[m]:.3f}" for m in metrics))
    table.caption = ("return: normalised (uniform 0, teacher 1); KL(pi_T || pi_theta) under the student's, "
                     "the teacher's and the uniform state distribution; agree: argmax agreement")
    return table


@bench_app.command("grid", epilog="Example: distill bench grid --empty-cells 200")
@cli_errors
def bench_grid_cmd(
    empty_cells: Annotated[int, typer.Option(help="Trivial cells that measure the runner's own cost.")] = 200,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
) -> None:
    """The grid runner's overhead per cell, and the speed-up of 2 workers over 1 on a small tabular study."""
    from study.bench import bench_grid

    if empty_cells < 1:
        raise UsageError(f"--empty-cells: {empty_cells} is out of range; allowed: empty-cells >= 1")
    if json_path is not None:
        check_writable_file(json_path)
    with err.status("timing the grid runner"):
        result = bench_grid(empty_cells)
    out.print(f"runner overhead: {result.seconds_per_empty_cell * 1000:.1f} ms per cell "
              f"(over {result.empty_cells} empty cells, 1 worker)")
    out.print(f"small tabular study ({result.study_cells} cells): {result.seconds_1_worker:.1f} s with 1 worker, "
              f"{result.seconds_2_workers:.1f} s with 2; speed-up {result.speedup:.2f}x")
    out.print(f"machine: {result.machine}")
    if json_path is not None:
        write_json(json_path, dataclasses.asdict(result))


@app.command("analyze", epilog="Example: distill analyze results/demo --baseline teacher_distill --plan-seeds")
@cli_errors
def analyze_cmd(
    folder: Annotated[Path, typer.Argument(help="A study results folder (finished or not).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write (default: FOLDER/analysis).")] = None,
    metric: Annotated[str, typer.Option(help="Run-level metric to compare (final value).")] = "return_norm",
    baseline: Annotated[str | None, typer.Option(help="Test every variant against this one only.")] = None,
    factors: Annotated[str | None, typer.Option(help="Comma-separated factors for the ANOVA; the first two "
                                                     "make the interaction heatmap (default: all).")] = None,
    facet: Annotated[str | None, typer.Option(help="Facet learning curves by this factor (default: task).")] = None,
    reps: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    permutations: Annotated[int, typer.Option(help="Permutations of the ANOVA's permutation test.")] = 2000,
    threshold: Annotated[float, typer.Option(help="Fraction of the teacher's score for steps-to-threshold.")] = 0.9,
    plan_seeds: Annotated[bool, typer.Option("--plan-seeds", help="Seeds needed to detect --delta.")] = False,
    delta: Annotated[float | None, typer.Option(help="Difference to detect (default: the observed one).")] = None,
    power: Annotated[float, typer.Option(help="Power for --plan-seeds.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Seed of every bootstrap and permutation draw.")] = 0,
) -> None:
    """Statistics, tables (CSV, Markdown, LaTeX), figures (PNG, PDF) and a report (report.md and a
    self-contained report.html) from a study's results folder."""
    from analysis.analyze import Options, analyze

    names = None if factors is None else [f.strip() for f in factors.split(",") if f.strip()]
    options = Options(metric=metric, baseline=baseline, factors=names, facet=facet, reps=reps,
                      permutations=permutations, threshold=threshold, plan_seeds=plan_seeds, delta=delta,
                      power=power, seed=seed)
    with err.status("analysing") as status:
        outcome = analyze(folder, out_dir, options, progress=lambda msg: status.update(f"analysing: {msg}"))
    out.print(f"cells: {outcome.done} done, {outcome.failed} failed, {outcome.missing} not finished")
    for line in outcome.headline:
        out.print(f"- {line}", soft_wrap=True)
    out.print(f"report: {outcome.report_html} (and report.md, tables/, figures/)")


@bench_app.command("atari", epilog="Example: distill bench atari --envs 8 --steps 8192")
@cli_errors
def bench_atari_cmd(
    envs: Annotated[int, typer.Option(help="Environments, the same for every part.")] = 8,
    steps: Annotated[int, typer.Option(help="Agent steps per part (4 frames each).")] = 4096,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: one per core).")] = None,
    device: Annotated[str, typer.Option(help="cpu, auto (the GPU when present) or cuda: where the networks "
                                             "run, for all three learners.")] = "cpu",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
) -> None:
    """Frames per second on Pong: raw stepping of ale-py's vector env, the distillation loop (teacher acting,
    the 25% student learning with Rusu's KL) and our PPO, each with the student in fp32 and in bf16, next to
    stable-baselines3's PPO."""
    from study.bench import bench_atari

    if envs < 1 or steps < envs * 64 or (threads is not None and threads < 1):
        raise UsageError(f"--envs {envs} / --steps {steps} / --threads {threads}; allowed: envs >= 1, "
                         "steps >= 64 x envs, threads >= 1")
    if json_path is not None:
        check_writable_file(json_path)
    from study.network.rl.common import pick_device

    pick_device(device)  # a device that is not there is refused before any work
    with err.status("timing Pong: raw stepping, distillation, PPO, stable-baselines3"):
        r = bench_atari(envs, steps, threads, device)
    out.print(f"raw stepping:              {r.raw_fps:,.0f} frames/s")
    for label, fps, ratio in (("distillation loop, fp32:", r.distill_fps, r.distill_over_raw),
                              ("distillation loop, bf16:", r.distill_bf16_fps, r.distill_bf16_over_raw)):
        out.print(f"{label:26} {fps:,.0f} frames/s ({ratio:.2f} x raw; student {r.student_fraction:.0%} of the "
                  "teacher's parameters; target >= 0.5)")
    if r.sb3_fps is None:
        out.print("stable-baselines3:         not installed (pip install -c constraints.txt -e '.[bench]')")
    else:
        out.print(f"stable-baselines3 PPO:     {r.sb3_fps:,.0f} frames/s")
    for label, fps, ratio in (("our PPO, fp32:", r.ppo_fps, r.ppo_over_sb3),
                              ("our PPO, bf16:", r.ppo_bf16_fps, r.ppo_bf16_over_sb3)):
        vs = f" ({ratio:.2f} x stable-baselines3; target >= 1.5)" if ratio is not None else ""
        out.print(f"{label:26} {fps:,.0f} frames/s{vs}")
    out.print(f"{r.num_envs} environments, {r.steps:,} agent steps each part, {r.threads} torch thread(s), "
              f"networks on {r.device}; "
              f"machine: {r.machine}", soft_wrap=True)
    if json_path is not None:
        write_json(json_path, dataclasses.asdict(r))


@bench_app.command("stats", epilog="Example: distill bench stats --reps 50000")
@cli_errors
def bench_stats_cmd(
    reps: Annotated[int, typer.Option(help="Bootstrap resamples per variant.")] = 50_000,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
) -> None:
    """Time stratified-bootstrap resamples of the IQM on a 10 seeds x 10 environments x 12 variants score
    matrix, against a loop that draws one resample at a time."""
    from study.bench import bench_stats

    if reps < 100:
        raise UsageError(f"--reps: {reps} is out of range; allowed: reps >= 100")
    if json_path is not None:
        check_writable_file(json_path)
    with err.status("timing the bootstrap"):
        result = bench_stats(reps)
    out.print(f"{result.reps:,} stratified resamples of the IQM for each of {result.variants} variants "
              f"({result.seeds} seeds x {result.envs} environments): {result.seconds:.2f} s "
              f"({result.resamples_per_second:,.0f} resamples/s)")
    out.print(f"one resample at a time: {result.loop_resamples_per_second:,.0f} resamples/s "
              f"(timed on {result.loop_reps:,}); vectorised speed-up {result.speedup:.0f}x")
    out.print(f"machine: {result.machine}")
    if json_path is not None:
        write_json(json_path, dataclasses.asdict(result))


@teacher_app.command("train", epilog="Example: distill teacher train minatar/breakout --algo dqn --steps 1000000 "
                                        "--out results/teachers/minatar-breakout.pt")
@cli_errors
def teacher_train_cmd(
    env: Annotated[str, typer.Argument(help="minatar/GAME or atari/GAME (or a gymnasium id such as ALE/Pong-v5).")],
    algo: Annotated[str, typer.Option(help="dqn (Q-values, what Rusu et al. distil) or ppo (logits and a "
                                           "value).")] = "dqn",
    steps: Annotated[int, typer.Option(help="Agent steps, all environments together (Atari: 4 frames each).")]
    = 1_000_000,
    out_path: Annotated[Path, typer.Option("--out", help="The teacher file to write.")] = Path("teacher.pt"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT.ckpt after an interruption.")] = False,
    device: Annotated[str, typer.Option(help="auto (the GPU when present), cpu, cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the networks, the environments and exploration.")] = 0,
    sticky: Annotated[float | None, typer.Option(help="Sticky-action probability (default: MinAtar 0.1, "
                                                      "Atari 0.25).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Agent steps between checkpoints (default: "
                                                               "steps / 20, at least 10,000).")] = None,
    eval_episodes: Annotated[int, typer.Option(help="Whole episodes in the final evaluation.")] = 30,
    eval_epsilon: Annotated[float, typer.Option(help="Exploration of a DQN teacher while evaluated.")] = 0.05,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (one per job when several run).")] = 1,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 mixed precision (faster on CPUs with AMX and on "
                                                "GPUs); a resumed run keeps its own.")] = "fp32",
) -> None:
    """Train a teacher, checkpointing as it goes; evaluate it and write the teacher file, its checkpoint
    (OUT.ckpt) and learning curve (OUT.curve.csv)."""
    import torch

    from study.network.rl.train import parse_env, train_teacher

    spec = parse_env(env, sticky)
    if threads < 1:
        raise UsageError(f"--threads {threads}; allowed: >= 1")
    torch.set_num_threads(threads)
    with _progress() as bar:
        task = bar.add_task(f"{algo} on {spec.id}", total=steps)

        def update(step: int, total: int, recent: float) -> None:
            bar.update(task, completed=min(step, total),
                       description=f"{algo} on {spec.id}: recent score {recent:.2f}")

        try:
            result = train_teacher(spec, algo, steps, out_path, resume=resume, device=device, seed=seed,
                                   checkpoint_every=checkpoint_every, eval_episodes=eval_episodes,
                                   eval_epsilon=eval_epsilon, config={"precision": precision}, progress=update)
        except KeyboardInterrupt:
            err.print(f"interrupted; continue from the last checkpoint with: distill teacher train {env} --algo "
                      f"{algo} --steps {steps} --out {out_path} --resume", soft_wrap=True)
            raise typer.Exit(130) from None
    m = result.meta
    out.print(f"{m.env_spec.id}: {m.algo} teacher after {m.steps:,} agent steps ({result.seconds:.0f} s, "
              f"{result.steps_per_second:,.0f} steps/s); score {m.eval_mean:.2f} +- {m.eval_std:.2f} over "
              f"{m.eval_episodes} episodes", soft_wrap=True)
    out.print(f"teacher: {result.path}; curve: {result.curve}", soft_wrap=True)


@teacher_app.command("eval", epilog="Example: distill teacher eval results/teachers/minatar-breakout.pt")
@cli_errors
def teacher_eval_cmd(
    path: Annotated[Path, typer.Argument(help="A teacher file.")],
    episodes: Annotated[int, typer.Option(help="Whole episodes to play.")] = 30,
    epsilon: Annotated[float, typer.Option(help="Exploration of a DQN teacher.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the environments and of exploration.")] = 0,
) -> None:
    """Mean and spread of a teacher's unclipped score over whole episodes."""
    import numpy as np

    from study.network.rl.train import eval_teacher

    if episodes < 1 or not 0 <= epsilon <= 1:
        raise UsageError(f"--episodes {episodes} / --epsilon {epsilon}; allowed: episodes >= 1, 0 <= epsilon <= 1")
    with err.status("playing"):
        teacher, scores = eval_teacher(path, episodes, epsilon, seed)
    m = teacher.meta
    out.print(f"{m.env_spec.id} ({m.algo}, {m.steps:,} training steps): score {scores.mean():.2f} +- "
              f"{scores.std(ddof=1) if len(scores) > 1 else 0.0:.2f} (sd) over {len(scores)} episodes; "
              f"median {np.median(scores):.1f}, min {scores.min():.1f}, max {scores.max():.1f}", soft_wrap=True)


@teacher_app.command("list", epilog="Example: distill teacher list results/teachers --markdown "
                                       "results/teachers/README.md")
@cli_errors
def teacher_list_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder of teacher files.")] = Path("results/teachers"),
    markdown: Annotated[Path | None, typer.Option(help="Also write the table here (Markdown).")] = None,
    curves: Annotated[bool, typer.Option("--curves", help="Redraw each teacher's learning-curve figure.")] = False,
) -> None:
    """The teachers in a folder: environment, algorithm, training steps, parameters and evaluation score."""
    import pandas as pd

    from analysis.tables import markdown as to_markdown
    from study.network.rl.train import draw_curve, teacher_table

    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder; allowed: a folder of teacher files (distill teacher train)")
    if markdown is not None:
        check_writable_file(markdown)
    rows = teacher_table(folder)
    if not rows:
        raise UsageError(f"{folder}: no teacher files (*.pt); make one with distill teacher train")
    frame = pd.DataFrame(rows)
    table = Table(title=f"teachers in {folder}")
    for col in frame.columns:
        table.add_column(col, justify="left" if frame[col].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                        for v in row))
    out.print(table)
    if curves:
        for name in frame["file"]:
            draw_curve(folder / name)
    if markdown is not None:
        from study.store.format import write_text

        write_text(markdown, f"# Teachers\n\nWritten by `distill teacher list {folder} --markdown {markdown}`; "
                             "scores are unclipped, over whole episodes (DQN teachers act epsilon-greedily with "
                             "epsilon 0.05).\n\n" + to_markdown(frame))
        out.print(f"wrote {markdown}")


@grid_app.command("plan", epilog="Example: distill grid plan demo")
@cli_errors
def grid_plan_cmd(
    study: Annotated[str, typer.Argument(help="A built-in study name or a path to a TOML file.")],
    show: Annotated[int, typer.Option(help="How many cells to list.")] = 10,
) -> None:
    """Validate a study and show its factors, cell count and first cells, without running anything."""
    from study.run.checks import check_study
    from study.spec import load_study

    if show < 0:
        raise UsageError(f"--show: {show} is out of range; allowed: show >= 0")
    s = check_study(load_study(study))
    spec = s.spec
    out.print(f"[bold]{spec.name}[/] ({spec.tier}) from {s.path}")
    if spec.description:
        out.print(spec.description)
    for key, values in spec.factors.items():
        out.print(f"  factor {key}: {', '.join(map(str, values))}")
    for key, value in spec.fixed.items():
        out.print(f"  fixed  {key} = {value}")
    if spec.exclude or spec.include:
        out.print(f"  {len(spec.exclude)} exclude and {len(spec.include)} include rule(s)")
    seeds = spec.seed_list
    out.print(f"{s.points} grid points x {len(seeds)} seeds ({', '.join(map(str, seeds))}) = {len(s.cells)} cells")
    table = Table(title=f"first {min(show, len(s.cells))} cells")
    table.add_column("cell id", no_wrap=True)
    keys = list(spec.factors) or ["variant"]
    for key in keys:
        table.add_column(key)
    table.add_column("seed")
    for cell in s.cells[:show]:
        table.add_row(cell.id, *(str(cell.params.get(k, "")) for k in keys), str(cell.seed))
    out.print(table)


@grid_app.command("run", epilog="Example: distill grid run demo --workers 2")
@cli_errors
def grid_run_cmd(
    study: Annotated[str, typer.Argument(help="A built-in study name or a path to a TOML file.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Results folder (default: results/<study>).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel workers (default: one per core).")] = None,
    backend: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting one.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed cells again.")] = False,
    device: Annotated[str, typer.Option(help="Where network cells run their networks: cpu, auto (the GPU "
                                             "when present) or cuda. Not part of a cell's id.")] = "cpu",
    reuse: Annotated[list[Path] | None, typer.Option(
        "--reuse", help="Another study's results folder: its finished cells that this study also has (the "
                        "same cell id) are copied instead of run. Repeatable.")] = None,
) -> None:
    """Run every cell of a study that is not finished yet; interrupt and rerun to resume."""
    from study.run.checks import check_study
    from study.run.runner import RunReport, run_study
    from study.spec import load_study

    if backend not in ("local", "ray"):
        raise UsageError(f"--backend: {backend!r} is not a backend; allowed: local, ray")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers: {workers} is out of range; allowed: workers >= 1")
    if ray_address and backend != "ray":
        raise UsageError("--ray-address needs --backend ray")
    from study.network.rl.common import pick_device

    pick_device(device)  # refused before anything is written when it is not there
    s = check_study(load_study(study))
    target = out_dir or Path("results") / s.name
    resume = f"distill grid run {study} --out {target}"
    resume += f" --backend {backend}" if backend != "local" else ""
    resume += f" --ray-address {ray_address}" if ray_address else ""
    resume += f" --workers {workers}" if workers else ""
    resume += f" --device {device}" if device != "cpu" else ""
    resume += "".join(f" --reuse {p}" for p in reuse or [])
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err) as bar:
        task = bar.add_task("cells", total=None)

        def update(r: RunReport) -> None:
            todo = r.total - r.skipped
            bar.update(task, total=todo, completed=len(r.done) + len(r.failed),
                       description=f"cells: {len(r.done)} done, {len(r.failed)} failed, {r.left} left")

        try:
            report = run_study(s, target, workers=workers, backend=backend, ray_address=ray_address,
                               retry_failed=retry_failed, on_update=update, device=device, reuse=reuse or [])
        except KeyboardInterrupt:
            err.print(f"interrupted; finished cells are kept in {target}. Resume with: {resume}", soft_wrap=True)
            raise typer.Exit(130) from None
    copied = f" ({report.reused} copied from --reuse)" if reuse else ""
    out.print(f"{s.name}: {len(report.done)} cells run, {report.skipped} already there{copied}, "
              f"{len(report.failed)} failed; results in {target}")
    if report.failed:
        out.print(f"see the error.json of failed cells (distill grid status {target}); rerun them with: "
                  f"{resume} --retry-failed", soft_wrap=True)


@grid_app.command("status", epilog="Example: distill grid status results/demo")
@cli_errors
def grid_status_cmd(
    folder: Annotated[Path, typer.Argument(help="A study results folder.")],
) -> None:
    """Count done, failed, running and missing cells of a results folder (the cells its manifest lists)."""
    from study.store import format as F

    try:
        manifest = F.read_manifest(folder)
    except F.FormatError as exc:
        raise UsageError(str(exc)) from None
    live = F.running(folder)
    state: dict[str, list[str]] = {key: [] for key in F.STATUSES}
    for cell in manifest.cells:
        state[F.cell_status(folder, cell.id, live)].append(cell.id)
    table = Table(title=f"{manifest.name}: {len(manifest.cells)} cells")
    for col in ("state", "cells"):
        table.add_column(col)
    for key in F.STATUSES:
        table.add_row(key, str(len(state[key])))
    out.print(table)
    for cell_id in state["failed"]:
        out.print(f"failed {cell_id}: {F.error_line(folder, cell_id)}", soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    app()
