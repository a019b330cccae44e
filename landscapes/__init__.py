"""2-D landscapes for zeroth-order optimizers: test functions, safe custom formulas, trajectory engine.

    from landscapes import LANDSCAPES, get, custom, run_trajectory
    ls = get("rosenbrock")
    ls = get("quadratic", kappa=100, angle=0)
    ls = custom("x**2 + 10*y**2", domain=((-2, 2), (-2, 2)), start=(1.5, 1.5))
    tr = run_trajectory(ls, "adamezo", steps=500, hyper={"lr": 0.01}, seed=0, seed_budget=None)
    runs = run_trajectories([TrajectoryJob(ls, n, 500) for n in ("mezo", "adamezo")])  # on several cores

The engine drives the real optimizer classes of ``optimizers`` on a float64 2-element parameter.
"""

from .catalogue import LANDSCAPES, LandscapeParam, get, names, parameters
from .formula import FUNCTIONS, MAX_LENGTH, FormulaError, custom
from .landscape import Landscape
from .recipes import from_recipe
from .engine import Repeats, Trajectory, path_length, run_repeats, run_trajectory, summarize
from .parallel import TrajectoryJob, run_trajectories
from .metrics import Metrics, compute_metrics
from .compare import (PATH_TOLERANCE, PathLengthError, PathMatch, Sweep, equal_budget, forward_passes_per_step,
                      log_grid, match_path_length, match_to_reference, run_budget, sweep, tune_lr)

__all__ = [
    "FUNCTIONS", "LANDSCAPES", "MAX_LENGTH", "PATH_TOLERANCE", "FormulaError", "Landscape", "LandscapeParam",
    "Metrics", "PathLengthError", "PathMatch",
    "Repeats", "Sweep", "Trajectory", "compute_metrics", "custom", "equal_budget", "forward_passes_per_step", "from_recipe", "get",
    "log_grid", "match_path_length", "match_to_reference", "names", "parameters", "path_length", "run_budget",
    "run_repeats", "run_trajectories", "run_trajectory", "summarize", "sweep", "TrajectoryJob", "tune_lr",
]
