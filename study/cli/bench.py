"""`distill bench tabular|grid|atari|stats`: the speed benchmarks (their targets live here, not in tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from study.cli.common import UsageError, cli_errors, err, out, progress

if TYPE_CHECKING:
    from study.bench import LoopProfile


@cli_errors
def bench_tabular_cmd(
    mdps: Annotated[int | None, typer.Option(
        help="Grid worlds in the batch (default: 1000; with --study, the MDPs of the timed slice: 100).")] = None,
    size: Annotated[int, typer.Option(help="Grid side.")] = 20,
    iterations: Annotated[int | None, typer.Option(
        help="Iterations per run (the first is not timed; default: 6, with --study: 60).")] = None,
    loop_mdps: Annotated[int | None, typer.Option(help="MDPs the per-MDP loop covers (default: all).")] = None,
    study: Annotated[str | None, typer.Option(help="Time a real study's first cells against the previous engine "
                                                   "and estimate the whole study (built-in name or file).")] = None,
    reference_iterations: Annotated[int | None, typer.Option(
        help="With --study: iterations of the previous engine (default: --iterations).")] = None,
    workers: Annotated[int, typer.Option(help="With --study: workers the estimate assumes.")] = 2,
    device: Annotated[str, typer.Option(help="With --study: where the previous code path (plain tensor "
                                             "operations) runs: cpu, auto or cuda; this engine runs on the "
                                             "CPU.")] = "cpu",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
) -> None:
    """The batched sampled engine against a per-MDP loop on the same work, in MDP-iterations/s; with --study,
    a real study's cells against the previous engine (on the CPU or, with --device, a GPU), and the whole
    study's estimated time."""
    from study.bench import bench_tabular
    from study.store.format import check_writable_file, write_json

    mdps = mdps if mdps is not None else (100 if study is not None else 1000)
    iterations = iterations if iterations is not None else (60 if study is not None else 6)
    for name, value, low in (("mdps", mdps, 1), ("size", size, 3), ("iterations", iterations, 2),
                             ("loop-mdps", loop_mdps if loop_mdps is not None else 1, 1), ("workers", workers, 1),
                             ("reference-iterations", reference_iterations or 2, 2)):
        if value < low:
            raise UsageError(f"--{name}: {value} is out of range; allowed: {name} >= {low}")
    if study is None and device != "cpu":
        raise UsageError("--device needs --study: the batched engine and the per-MDP loop run on the CPU")
    if json_path is not None:
        check_writable_file(json_path)
    if study is not None:
        result = _bench_study(study, mdps, iterations, reference_iterations, workers, device)
    else:
        total = mdps if loop_mdps is None else min(loop_mdps, mdps)
        with progress() as bar:
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
                  f"{result.fig3_hours_per_curve:.2f} h per curve, {result.fig3_hours_all_curves:.1f} h for its 9 "
                  "curves")
        out.print(f"machine: {result.machine}")
    if json_path is not None:
        write_json(json_path, dataclasses.asdict(result))


def _bench_study(study: str, mdps: int, iterations: int, reference_iterations: int | None, workers: int,
                 device: str) -> Any:
    from study.bench import bench_study

    with err.status(f"timing {study}: this engine, then the previous code path"):
        result = bench_study(study, mdps=mdps, iterations=iterations, reference_iterations=reference_iterations,
                             workers=workers, device=device)
    table = Table(title=f"{result.study}: its first {result.arms} arms on {result.mdps} MDPs "
                        f"({result.arms * result.mdps} instances)")
    for col in ("engine", "timed iterations", "teacher s/MDP", "set-up ms/instance", "instance-iterations/s",
                "evaluation ms/instance", f"whole study, {result.workers} workers"):
        table.add_column(col)
    for name, its, part in (("this engine (cpu)", result.iterations, result.now),
                            (f"previous code path ({result.device})", result.reference_iterations, result.before)):
        table.add_row(name, str(its), f"{part.teacher_seconds_per_mdp:.3f}",
                      f"{part.setup_seconds_per_instance * 1000:.2f}", f"{part.train_rate:,.0f}",
                      f"{part.evaluate_seconds_per_instance * 1000:.2f}", f"{part.study_seconds / 60:,.1f} min")
    out.print(table)
    out.print(f"whole study: {result.study_instances:,} instances x {result.study_iterations:,} iterations, "
              f"{result.study_evaluations} evaluations; estimated {result.now.study_seconds / 60:.1f} min "
              f"against {result.before.study_seconds / 3600:.1f} h on the previous code path ({result.device}; "
              f"{result.ratio:.1f}x)")
    if result.now.rollout_share == result.now.rollout_share:
        out.print(f"this engine's training time: {result.now.rollout_share:.0%} sampling episodes, the rest the "
                  "surrogate, its gradient and the step")
    if result.timed_ratio == result.timed_ratio:  # not NaN: both engines did the same work
        out.print(f"on the timed work itself: {result.before.timed_seconds:.1f} s before, "
                  f"{result.now.timed_seconds:.1f} s now ({result.timed_ratio:.1f}x)")
    out.print(f"peak memory of the timed slice: {result.peak_rss_gib:.2f} GiB")
    out.print(f"machine: {result.machine}")
    return result


@cli_errors
def bench_grid_cmd(
    empty_cells: Annotated[int, typer.Option(help="Trivial cells that measure the runner's own cost.")] = 200,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
) -> None:
    """The grid runner's overhead per cell, and the speed-up of 2 workers over 1 on a small tabular study."""
    from study.bench import bench_grid
    from study.store.format import check_writable_file, write_json

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
    stable-baselines3's PPO; then the loop's work per agent step, part by part, against its target's budget."""
    from study.bench import bench_atari
    from study.store.format import check_writable_file, write_json

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
    _print_profile(r.profile)
    out.print(f"{r.num_envs} environments, {r.steps:,} agent steps each part, {r.threads} torch thread(s), "
              f"networks on {r.device}; "
              f"machine: {r.machine}", soft_wrap=True)
    if json_path is not None:
        write_json(json_path, dataclasses.asdict(r))


def _print_profile(p: LoopProfile) -> None:
    """The loop's work per agent step, part by part, against the 0.5 x raw budget."""
    out.print(f"distillation loop, per agent step (each part timed alone; budget at 0.5 x raw: {p.budget_us:,.0f} us "
              f"of wall time, {p.budget_us * p.cores:,.0f} us of CPU time on {p.cores} cores):", soft_wrap=True)
    for name, us in p.parts.items():
        out.print(f"  {us:8,.0f} us  {us / (p.budget_us * p.cores):5.0%} of the CPU budget  {name}", soft_wrap=True)
    out.print(f"  {p.cpu_us:8,.0f} us  {p.cpu_us / (p.budget_us * p.cores):5.0%} of the CPU budget  in all; spread "
              f"perfectly over {p.cores} cores: {p.floor_us:,.0f} us; the loop measured: {p.loop_us:,.0f} us "
              f"({'over' if p.over_budget_us > 0 else 'under'} the budget by {abs(p.over_budget_us):,.0f} us)",
              soft_wrap=True)


@cli_errors
def bench_stats_cmd(
    reps: Annotated[int, typer.Option(help="Bootstrap resamples per variant.")] = 50_000,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
) -> None:
    """Time stratified-bootstrap resamples of the IQM on a 10 seeds x 10 environments x 12 variants score
    matrix, against a loop that draws one resample at a time."""
    from analysis.bench import bench_stats
    from study.store.format import check_writable_file, write_json

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
