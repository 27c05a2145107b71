"""`distill teacher train|eval|list`: teachers of the network tiers, and their learning-curve figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from study.cli.common import UsageError, cli_errors, err, out, progress

if TYPE_CHECKING:
    import pandas as pd


def draw_curve(teacher: Path) -> list[Path]:
    """The teacher's learning curve as a figure (OUT.curve.png and .pdf) from OUT.curve.csv, titled with
    its environment, algorithm and score; nothing when no training episode finished. It lives here because
    ``study`` does not draw: only the command line imports both ``study`` and ``analysis``."""
    import pandas as pd

    from analysis.plots import training_curve
    from study.network.rl.train import paths
    from study.network.teacher import read_teacher

    meta, _ = read_teacher(teacher)
    curve = paths(teacher)[1]
    frame = pd.read_csv(curve)
    if frame.empty:
        return []
    return training_curve(frame, curve.with_suffix(".png"),
                          title=f"{meta.env_spec.id}: {meta.algo}, score {meta.eval_mean:.2f} +- {meta.eval_std:.2f}")


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
    with progress() as bar:
        task = bar.add_task(f"{algo} on {spec.id}", total=steps)

        def update(step: int, total: int, recent: float) -> None:
            bar.update(task, completed=min(step, total),
                       description=f"{algo} on {spec.id}: recent score {recent:.2f}")

        try:
            result = train_teacher(spec, algo, steps, out_path, resume=resume, device=device, seed=seed,
                                   checkpoint_every=checkpoint_every, eval_episodes=eval_episodes,
                                   eval_epsilon=eval_epsilon, config={"precision": precision}, progress=update)
        except KeyboardInterrupt:
            again = f"distill teacher train {env} --algo {algo} --steps {steps} --sticky {spec.sticky} --out {out_path}"
            again += f" --seed {seed}" if seed else ""
            again += f" --checkpoint-every {checkpoint_every}" if checkpoint_every else ""
            err.print(f"interrupted; continue from the last checkpoint with: {again} --resume", soft_wrap=True)
            raise typer.Exit(130) from None
    draw_curve(result.path)
    m = result.meta
    out.print(f"{m.env_spec.id}: {m.algo} teacher after {m.steps:,} agent steps ({result.seconds:.0f} s, "
              f"{result.steps_per_second:,.0f} steps/s); score {m.eval_mean:.2f} +- {m.eval_std:.2f} over "
              f"{m.eval_episodes} episodes", soft_wrap=True)
    out.print(f"teacher: {result.path}; curve: {result.curve}", soft_wrap=True)


@cli_errors
def teacher_eval_cmd(
    path: Annotated[Path, typer.Argument(help="A teacher file.")],
    episodes: Annotated[int, typer.Option(help="Whole episodes to play.")] = 30,
    epsilon: Annotated[float, typer.Option(help="Exploration of a DQN teacher (of any teacher with --greedy).")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the environments and of exploration.")] = 0,
    greedy: Annotated[bool, typer.Option("--greedy", help="Act by argmax with --epsilon exploration whatever the "
                                         "algorithm, as studies score teachers and students (a PPO teacher "
                                         "otherwise samples its policy).")] = False,
) -> None:
    """Mean and spread of a teacher's unclipped score over whole episodes."""
    import numpy as np

    from study.network.rl.train import eval_teacher

    if episodes < 1 or not 0 <= epsilon <= 1:
        raise UsageError(f"--episodes {episodes} / --epsilon {epsilon}; allowed: episodes >= 1, 0 <= epsilon <= 1")
    with err.status("playing"):
        teacher, scores = eval_teacher(path, episodes, epsilon, seed, greedy)
    m = teacher.meta
    acting = f"argmax, epsilon {epsilon:g}" if greedy or m.algo == "dqn" else "sampling its policy"
    out.print(f"{m.env_spec.id} ({m.algo}, {m.steps:,} training steps; {acting}, sticky {m.env_spec.sticky:g}): "
              f"score {scores.mean():.2f} +- "
              f"{scores.std(ddof=1) if len(scores) > 1 else 0.0:.2f} (sd) over {len(scores)} episodes; "
              f"median {np.median(scores):.1f}, min {scores.min():.1f}, max {scores.max():.1f}", soft_wrap=True)


@cli_errors
def teacher_list_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder of teacher files.")] = Path("results/teachers"),
    markdown: Annotated[Path | None, typer.Option(help="Also write the table here (Markdown).")] = None,
    curves: Annotated[bool, typer.Option("--curves", help="Redraw each teacher's learning-curve figure.")] = False,
) -> None:
    """The teachers in a folder: environment, algorithm, training steps, parameters and evaluation score."""
    import pandas as pd

    from analysis.tables import markdown as to_markdown
    from study.network.rl.train import teacher_table
    from study.store.format import check_writable_file, write_text

    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder; allowed: a folder of teacher files (distill teacher train)")
    if markdown is not None:
        check_writable_file(markdown)
    rows = teacher_table(folder)
    if not rows:
        raise UsageError(f"{folder}: no teacher files (*.pt); make one with distill teacher train")
    frame = pd.DataFrame(rows)
    out.print(teachers_table(frame, f"teachers in {folder}"))
    if curves:
        for name in frame["file"]:
            draw_curve(folder / name)
    if markdown is not None:
        write_text(markdown, f"# Teachers\n\nWritten by `distill teacher list {folder} --markdown {markdown}`; "
                             "scores are unclipped, over whole episodes (DQN teachers act epsilon-greedily with "
                             "epsilon 0.05).\n\n" + to_markdown(frame))
        out.print(f"wrote {markdown}")


def teachers_table(frame: pd.DataFrame, title: str) -> Table:
    """The rows of `teacher_table` for the terminal: text left, numbers right with thousands separators."""
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(col, justify="left" if frame[col].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                        for v in row))
    return table
