"""The `distill` command line: the typer app, its sub-apps, and which command goes where.

Each command lives in the module of its topic (``study.cli.grid`` and so on); this file only names and
registers them, with the example each `--help` ends with. Registering imports no heavy module (torch,
pandas, ``analysis``, the engines): the commands import those when they run, so `distill --help` is fast.
"""

from __future__ import annotations

import typer

from study.cli import analyze, bench, claims, demo, grid, teacher, variants

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

app.command("variants", epilog="Example: distill variants --json")(variants.variants_cmd)
app.command("claims", epilog="Example: distill claims --quick --json claims.json")(claims.claims_cmd)
app.command("demo", epilog="Example: distill demo --out results/demo")(demo.demo_cmd)
app.command("analyze", epilog="Example: distill analyze results/demo --baseline teacher_distill "
                               "--plan-seeds")(analyze.analyze_cmd)

bench_app.command("tabular", epilog="Example: distill bench tabular --mdps 1000 --loop-mdps 100")(
    bench.bench_tabular_cmd)
bench_app.command("grid", epilog="Example: distill bench grid --empty-cells 200")(bench.bench_grid_cmd)
bench_app.command("atari", epilog="Example: distill bench atari --envs 8 --steps 8192")(bench.bench_atari_cmd)
bench_app.command("stats", epilog="Example: distill bench stats --reps 50000")(bench.bench_stats_cmd)

teacher_app.command("train", epilog="Example: distill teacher train minatar/breakout --algo dqn --steps 1000000 "
                                    "--out results/teachers/minatar-breakout.pt")(teacher.teacher_train_cmd)
teacher_app.command("eval", epilog="Example: distill teacher eval results/teachers/minatar-breakout.pt")(
    teacher.teacher_eval_cmd)
teacher_app.command("list", epilog="Example: distill teacher list results/teachers --markdown "
                                   "results/teachers/README.md")(teacher.teacher_list_cmd)

grid_app.command("plan", epilog="Example: distill grid plan demo")(grid.grid_plan_cmd)
grid_app.command("run", epilog="Example: distill grid run demo --workers 2")(grid.grid_run_cmd)
grid_app.command("status", epilog="Example: distill grid status results/demo")(grid.grid_status_cmd)


if __name__ == "__main__":  # pragma: no cover
    app()
