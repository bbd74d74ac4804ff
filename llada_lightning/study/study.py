"""A study in an output directory: its design, the windows placed so far, and the sweep that trains them.

    <out>/<name>/study.json   the design's parameters, each placed (objective, budget) window, placement notes
    <out>/<name>/spec.yaml    the sweep spec of every placed run (`llada sweep status <out>/<name>/spec.yaml`)
    <out>/<name>/<signature>/ one run directory per run (sweep/), then points.csv, fit.json, plots/, summary.txt

Everything is decided from these files and the run directories, never from memory: a relaunch places nothing
twice (a placed window is never moved), trains nothing twice (the sweep skips finished and active runs) and a
changed design in the same directory is refused, naming the parameters that differ.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.io import atomic_write_json, atomic_write_text
from llada_lightning.study.design import Design

RECORD = "study.json"
SPEC = "spec.yaml"
TERMINAL = ("done", "failed")  # a cell whose runs are all in these states has finished


@dataclass
class Planned:
    """One run of the study as `--dry-run` and `--status` list it."""

    cell: str
    run: Any  # sweep.Run
    placed: bool  # False: a provisional window (waits for smaller budgets to finish)


@dataclass
class Study:
    """A design trained under `out`, launched through `executor` (local, slurm, debug)."""

    design: Design
    out: Path
    executor: str = "local"
    parallel: int = 2
    threads: int = 1
    overrides: list[str] = field(default_factory=list)  # extra run overrides (they change the runs' signatures)
    stream: TextIO = field(default_factory=lambda: sys.stdout)

    @property
    def directory(self) -> Path:
        return self.out / self.design.name

    # -- the record ----------------------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """study.json ({} before the first launch); refuses a directory holding another design."""
        data = rundir.read_record(self.directory / RECORD)
        if data is None:
            if (self.directory / RECORD).exists():
                raise ConfigError(f"{self.directory / RECORD}: not a readable study record; move it away")
            return {}
        previous, current = data.get("params", {}), self.design.params()
        differ = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if differ:
            raise ConfigError(
                f"{self.directory} holds a study of another design (differs in {', '.join(differ)}); "
                f"choose another --out, or set another name (--set name=...)"
            )
        return data

    def windows(self) -> dict[str, list[Any]]:
        return dict(self.record().get("windows", {}))

    def _save(self, windows: dict[str, list[Any]], notes: list[str]) -> None:
        old = self.record()
        record = {
            "params": self.design.params(),
            "windows": windows,
            "notes": list(dict.fromkeys([*old.get("notes", []), *notes])),
            "updated": time.time(),
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.directory / RECORD, record)

    # -- the sweep -----------------------------------------------------------------------------------------------
    def spec(self, windows: dict[str, list[Any]]) -> dict[str, Any]:
        """The sweep spec of every run in `windows`: one zip group of rows."""
        rows = self.design.rows(windows)
        keys = list(rows[0]) if rows else []
        return {
            "name": self.design.name,
            "root": str(self.out.resolve()),
            "cluster": "local",
            "description": f"study {self.design.kind} (written by llada study; edit the design, not this file)",
            # every run a branch: the next wave's budgets then extend the trunks of this wave's sizes
            "share_trunks": "always" if self.design.shares_trunks else False,
            "base": self.design.run_overrides(),
            "zip": [{k: [row[k] for row in rows] for k in keys}] if rows else [],
        }

    def sweep_overrides(self) -> list[str]:
        return [f"cluster.parallel={self.parallel}", f"cluster.torch_threads={self.threads}", *self.overrides]

    def write_spec(self, windows: dict[str, list[Any]]) -> Path:
        path = self.directory / SPEC
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(self.spec(windows), sort_keys=False))
        return path

    def expand(self, windows: dict[str, list[Any]]) -> list[Any]:
        from llada_lightning.sweep.spec import SweepSpec, expand

        s = self.spec(windows)
        spec = SweepSpec(name=s["name"], root=s["root"], base=s["base"], zip=s["zip"])
        return expand(spec, self.overrides) if s["zip"] else []

    def plan(self) -> list[Planned]:
        """Every run of the study: placed windows, then provisional windows for the cells still waiting."""
        placed = self.windows()
        if not placed:
            placed, _ = self.design.place({}, {})
        everything = self.design.provisional(placed)
        runs = self.expand(everything)
        by_cell = {}
        for key, widths in everything.items():
            for width in widths:
                by_cell[(key, width)] = key in placed
        out = []
        for run in runs:
            key = self.design.cell_of(run.cfg)
            out.append(Planned(key, run, by_cell.get((key, self.design.size_of(run.cfg)), True)))
        return out

    def finished(self, runs: list[Any], states: dict[str, Any]) -> dict[str, tuple[list[int], list[float]] | None]:
        """Per cell: (widths, final validation losses) once all its runs are done or failed, else None."""
        cells: dict[str, list[Any]] = {}
        for run in runs:
            cells.setdefault(self.design.cell_of(run.cfg), []).append(run)
        out: dict[str, tuple[list[int], list[float]] | None] = {}
        for key, members in cells.items():
            if any(states[r.signature].state not in TERMINAL for r in members):
                out[key] = None
                continue
            widths, losses = [], []
            for r in members:
                s = states[r.signature]
                widths.append(self.design.size_of(r.cfg))
                loss = s.val_loss if s.state == "done" and isinstance(s.val_loss, int | float) else float("nan")
                losses.append(float(loss))
            out[key] = (widths, losses)
        return out

    def place(self) -> tuple[dict[str, list[Any]], list[str], list[Any]]:
        """Place what can be placed now; returns (windows, new notes, runs of the placed windows)."""
        from llada_lightning.sweep.launch import statuses

        windows = self.windows()
        runs = self.expand(windows) if windows else []
        states = statuses(runs) if runs else {}
        new, notes = self.design.place(windows, self.finished(runs, states))
        if new != windows or not (self.directory / RECORD).is_file():
            self._save(new, notes)
            for note in notes:
                print(f"study: placed {note}", file=self.stream)
        return new, notes, self.expand(new)

    # -- verbs ---------------------------------------------------------------------------------------------------
    def launch(self, *, wait: bool | None = None) -> tuple[list[Any], dict[str, Any]]:
        """Place, write the spec, launch what is neither done nor active; with the local executor (or `wait`)
        wait for each wave and place the next, until every cell is placed and trained. Returns (runs, states)."""
        from llada_lightning.sweep.launch import launch, statuses, wait_for

        wait = self.executor in ("local", "debug") if wait is None else wait  # debug: in-process, done on return
        while True:
            windows, _, runs = self.place()
            spec = self.write_spec(windows)
            launch(str(spec), executor=self.executor, overrides=self.sweep_overrides(), wait=wait, out=self.stream)
            states = wait_for(runs, poll_s=1.0) if wait else statuses(runs)
            complete = len(windows) == len(self.design.cells())
            if complete or not wait:
                break
            if self.design.place(windows, self.finished(runs, states))[0] == windows:
                break  # nothing new can be placed (a cell did not finish: failed or cancelled runs)
        waiting = len(self.design.cells()) - len(windows)
        if waiting:
            print(
                f"study: {waiting} (objective, budget) cells wait for smaller budgets to finish; rerun the same "
                f"command when they have (`--status` shows them)",
                file=self.stream,
            )
        return runs, states

    def status(self) -> dict[str, dict[str, int]]:
        """Per cell: expected runs, and how many are in each state; printed as a table."""
        from llada_lightning.sweep.launch import statuses

        windows = self.windows()
        runs = self.expand(windows) if windows else []
        states = statuses(runs) if runs else {}
        expected = {p.cell: 0 for p in self.plan()}
        for p in self.plan():
            expected[p.cell] += 1
        table: dict[str, dict[str, int]] = {}
        for key in expected:
            table[key] = {"expected": expected[key], "placed": len(windows.get(key, [])) * len(self.design.seeds)}
        for run in runs:
            key = self.design.cell_of(run.cfg)
            s = states[run.signature].state
            table.setdefault(key, {"expected": 0, "placed": 0})
            table[key][s] = table[key].get(s, 0) + 1
        cols = ("done", "running", "queued", "preempted", "failed", "cancelled", "pending")
        print(f"study {self.design.name} ({self.design.kind}) in {self.directory}", file=self.stream)
        print(
            f"{'cell':<22} {'expected':>8} {'placed':>6} " + " ".join(f"{c:>9}" for c in cols) + "  sizes",
            file=self.stream,
        )
        for key, row in table.items():
            sizes = ",".join(str(w) for w in windows.get(key, [])) or "(waits for smaller budgets)"
            print(
                f"{key:<22} {row['expected']:>8} {row['placed']:>6} "
                + " ".join(f"{row.get(c, 0):>9}" for c in cols)
                + f"  {sizes}",
                file=self.stream,
            )
        done = sum(r.get("done", 0) for r in table.values())
        total = sum(r["expected"] for r in table.values())
        print(f"finished: {done} of {total} expected runs", file=self.stream)
        for note in self.record().get("notes", []):
            print(f"note: {note}", file=self.stream)
        return table
