"""Katib experiments a team declares: hyperparameter searches over the built-in trainer.

Each experiment tunes some of `training.train`'s flags (`TUNABLE`) with one of Katib's search
algorithms, and runs every trial as a TFJob or a single-pod Job.  What Katib's own admission
webhook and suggestion services would refuse is refused here first, with the key to fix; the
rules are theirs at the pinned release (kubeflow/katib@v0.19.0):

- pkg/webhook/v1beta1/experiment/validator/validator.go L84-118: the name (at most 40
  characters), maxTrialCount > 0, parallelTrialCount > 0, maxFailedTrialCount >= 0, neither above
  maxTrialCount; L255-300: a double or int parameter takes min and max, no list; a categorical
  or discrete one takes a list, no min, max or step;
- pkg/suggestion/v1beta1/hyperopt/service.py L93-143 (random, tpe), skopt/service.py L117-165
  (bayesianoptimization), optuna/service.py L221-259 (grid): which settings each algorithm takes
  and their ranges; grid also needs maxTrialCount within the number of combinations;
- search spaces a suggestion service cannot draw from, or draws from outside min..max, which the
  trainer would refuse (`_check_distribution`, `ExperimentSettings._check_sampling`):
  pkg/suggestion/v1beta1/hyperopt/base_service.py L62-139 (random, tpe) takes `math.log` of min
  and max for `logUniform`/`logNormal` (min <= 0 raises), samples `normal`/`logNormal` with no
  bounds (mu the range's middle, sigma a sixth of it), and with a `step` uses hyperopt's
  quantized forms, which round each draw to a multiple of the step (hyperopt/hyperopt@0.2.5,
  pinned by cmd/suggestion/hyperopt/v1beta1/requirements.txt:
  hyperopt/pyll/stochastic.py L50-60: `np.round(draw / q) * q`); pkg/suggestion/v1beta1/skopt/
  base_service.py L66-74 (bayesianoptimization) searches every `double` as
  `Real(min, max, "log-uniform")`, whose log10(min) is -inf or NaN for min <= 0
  (scikit-optimize/scikit-optimize@v0.9.0:skopt/space/space.py L302-324).
"""

from __future__ import annotations

import builtins
import math
import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, model_validator

from infra.settings.base import ConfigProblem, Quantity, SettingsModel, refuse_duplicates
from infra.settings.workloads import ARTIFACT_ACCESS_HELP, ArtifactAccess, PinnedImage

# The trainer's flags an experiment may tune: parameter name -> (flag, value type, lowest, highest
# allowed value, whether the lowest is excluded).  training/train.py defines the flags.
TUNABLE: dict[str, tuple[str, type, float, float | None, bool]] = {
    "learning_rate": ("--learning-rate", float, 0.0, 1.0, True),
    "batch_size": ("--batch-size", int, 1, 65536, False),
    "hidden_units": ("--hidden-units", int, 1, 65536, False),
    "dropout": ("--dropout", float, 0.0, 0.99, False),  # the trainer refuses 1 or more
    "epochs": ("--epochs", int, 1, 10000, False),
}
TunableName = Literal["learning_rate", "batch_size", "hidden_units", "dropout", "epochs"]
# What the trainer prints for Katib's StdOut collector (training/train.py, REPORTED_METRICS).
TrainerMetric = Literal["test_accuracy", "test_loss"]

# kubeflow/katib@v0.19.0:pkg/webhook/v1beta1/experiment/validator/validator.go L84-85.
EXPERIMENT_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_EXPERIMENT_NAME = 40


class ObjectiveSettings(SettingsModel):
    metric: TrainerMetric = Field(
        description="The trainer's metric to optimise: `test_accuracy` or `test_loss` (on the "
        "test set, after the last epoch)."
    )
    type: Literal["maximize", "minimize"] = Field(description="`maximize` or `minimize` it.")
    goal: float | None = Field(
        default=None, description="Stop the experiment once a trial reaches this value."
    )

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSettings:
        expected = "maximize" if self.metric == "test_accuracy" else "minimize"
        if self.type != expected:
            better = "larger" if expected == "maximize" else "smaller"
            raise ConfigProblem(
                ("type",), f"{self.metric} is better when {better}; use `type: {expected}`"
            )
        return self


# Each algorithm's settings and what values they take (the suggestion services' validators).
_NON_NEGATIVE_INT = r"^[0-9]+$"
ALGORITHM_SETTINGS: dict[str, dict[str, str]] = {
    "random": {"random_state": _NON_NEGATIVE_INT},
    "grid": {"random_state": _NON_NEGATIVE_INT},
    "tpe": {
        "random_state": _NON_NEGATIVE_INT,
        "n_EI_candidates": r"^[1-9][0-9]*$",
        "gamma": r"^0?\.[0-9]*[1-9][0-9]*$",  # strictly between 0 and 1
        "prior_weight": r"^[0-9]*\.?[0-9]+$",
    },
    "bayesianoptimization": {
        "random_state": _NON_NEGATIVE_INT,
        "n_initial_points": _NON_NEGATIVE_INT,
        "base_estimator": r"^(GP|RF|ET|GBRT)$",
        "acq_func": r"^(gp_hedge|LCB|EI|PI|EIps|PIps)$",
        "acq_optimizer": r"^(auto|sampling|lbfgs)$",
    },
}


class AlgorithmSettings(SettingsModel):
    name: Literal["random", "grid", "tpe", "bayesianoptimization"] = Field(
        default="random",
        description="Search algorithm: `random`, `grid`, `tpe` or `bayesianoptimization`.",
    )
    settings: dict[str, str] = Field(
        default_factory=dict,
        description="The algorithm's settings (random, grid: random_state; tpe: random_state, "
        "n_EI_candidates, gamma, prior_weight; bayesianoptimization: random_state, "
        "n_initial_points, base_estimator, acq_func, acq_optimizer), values as strings.",
    )

    @model_validator(mode="after")
    def _check(self) -> AlgorithmSettings:
        known = ALGORITHM_SETTINGS[self.name]
        for key, value in self.settings.items():
            if key not in known:
                raise ConfigProblem(
                    ("settings", key),
                    f"`{self.name}` has no setting {key!r}; it takes {', '.join(sorted(known))}",
                )
            if not re.match(known[key], value):
                raise ConfigProblem(
                    ("settings", key),
                    f"{value!r} is not a valid {key} for `{self.name}` (expected {known[key]})",
                )
            if key == "prior_weight" and not Decimal(value) > 0:
                raise ConfigProblem(("settings", key), "prior_weight must be above 0")
        return self


class ParameterSettings(SettingsModel):
    name: TunableName = Field(
        description="The trainer flag to tune: learning_rate, batch_size, hidden_units, dropout "
        "or epochs."
    )
    type: Literal["double", "int", "discrete", "categorical"] = Field(
        description="`double` or `int` (a range: min, max, optional step), `discrete` or "
        "`categorical` (a list)."
    )
    min: str | None = Field(default=None, description="Lowest value (double, int).")
    max: str | None = Field(default=None, description="Highest value (double, int).")
    step: str | None = Field(
        default=None, description="Step between values (double, int; needed by grid for double)."
    )
    list: Annotated[builtins.list[str], Field(min_length=1)] | None = Field(
        default=None, description="The values to try (discrete, categorical)."
    )
    distribution: Literal["uniform", "logUniform", "normal", "logNormal"] | None = Field(
        default=None,
        description="How values are drawn: `uniform`, or `logUniform` (min above 0; e.g. for a "
        "learning rate). `normal` and `logNormal` draw outside min..max, which the trainer "
        "refuses.",
    )

    @model_validator(mode="after")
    def _check(self) -> ParameterSettings:
        values = self._range_values() if self.type in ("double", "int") else self._list_values()
        for key, text in values.items():
            self._check_value(key, text)
        if self.min is not None and self.max is not None and float(self.min) >= float(self.max):
            raise ConfigProblem(("max",), f"max ({self.max}) must be above min ({self.min})")
        self._check_distribution()
        return self

    def _check_distribution(self) -> None:
        """What Katib's hyperopt service (random, tpe) cannot draw, or draws unbounded."""
        if self.distribution in ("logUniform", "logNormal") and Decimal(str(self.min)) <= 0:
            raise ConfigProblem(
                ("min",),
                f"`{self.distribution}` takes the logarithm of min, so min must be above 0, "
                f"not {self.min}; raise min, or use `distribution: uniform`",
            )
        if self.distribution in ("normal", "logNormal"):
            _, _, lowest, highest, _ = TUNABLE[self.name]
            raise ConfigProblem(
                ("distribution",),
                f"`{self.distribution}` draws values outside min and max (Katib centres it "
                f"between them, unbounded), and the trainer refuses {self.name} below {lowest} "
                f"or above {highest}; use `uniform` or `logUniform`",
            )

    def off_grid(self) -> bool:
        """Whether rounding a draw to a multiple of `step` can leave min..max."""
        if self.step is None or self.min is None or self.max is None:
            return False
        step = Decimal(self.step)
        return Decimal(self.min) % step != 0 or Decimal(self.max) % step != 0

    def _range_values(self) -> dict[str, str]:
        if self.list is not None:
            raise ConfigProblem(("list",), f"a `{self.type}` parameter takes min and max, not list")
        if self.min is None or self.max is None:
            raise ConfigProblem(
                ("min" if self.min is None else "max",),
                f"a `{self.type}` parameter needs min and max",
            )
        if self.type == "double" and TUNABLE[self.name][1] is int:
            raise ConfigProblem(
                ("type",), f"{self.name} is a whole number; use `int` (or a `discrete` list)"
            )
        return {"min": self.min, "max": self.max, **({"step": self.step} if self.step else {})}

    def _list_values(self) -> dict[str, str]:
        for key in ("min", "max", "step"):
            if getattr(self, key) is not None:
                raise ConfigProblem((key,), f"a `{self.type}` parameter takes a list, not {key}")
        if self.list is None:
            raise ConfigProblem(("list",), f"a `{self.type}` parameter needs a list of values")
        return {f"list[{i}]": v for i, v in enumerate(self.list)}

    def _check_value(self, key: str, text: str) -> None:
        _, kind, lowest, highest, open_low = TUNABLE[self.name]
        step = key == "step"
        number = _number(text, float if step and self.type == "double" else kind)
        if number is None:
            raise ConfigProblem((key,), f"{text!r} is not a valid {self.name} ({kind.__name__})")
        if step:
            if number <= 0:
                raise ConfigProblem((key,), "step must be above 0")
            return
        low_ok = number > lowest if open_low else number >= lowest
        if not low_ok or (highest is not None and number > highest):
            bound = f"above {lowest}" if open_low else f"at least {lowest}"
            raise ConfigProblem(
                (key,), f"{self.name} must be {bound} and at most {highest}, not {text}"
            )

    def grid_size(self) -> int | None:
        """How many values grid search tries; None when the range has no step (double)."""
        if self.list is not None:
            return len(self.list)
        assert self.min is not None
        assert self.max is not None
        if self.type == "int":
            step = int(self.step or 1)
            return (int(self.max) - int(self.min)) // step + 1
        if self.step is None:
            return None
        return math.floor((Decimal(self.max) - Decimal(self.min)) / Decimal(self.step)) + 1


def _number(text: str, kind: type) -> float | None:
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        return None
    return float(value) if math.isfinite(value) else None


class TrialSettings(SettingsModel):
    kind: Literal["TFJob", "Job"] = Field(
        default="TFJob",
        description="Run each trial as a TFJob (`workers` replicas) or a single-pod batch Job.",
    )
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="TFJob: worker replicas per trial (MultiWorkerMirroredStrategy)."
    )
    gpus_per_worker: Annotated[int, Field(ge=0, le=8)] = Field(
        default=0, description="Whole GPUs per worker (or for the Job's pod); 0 for CPU trials."
    )
    pool: str = Field(
        default="system", description="Node pool the trials run on (a GPU pool for GPU trials)."
    )
    cpu: Quantity = Field(default="2", description="cpu request per worker.")
    memory: Quantity = Field(default="4Gi", description="Memory request and limit per worker.")
    epochs: Annotated[int, Field(ge=1)] = Field(
        default=5, description="Epochs of a trial, unless `epochs` is tuned."
    )
    batch_size: Annotated[int, Field(ge=1)] = Field(
        default=256, description="Per-replica batch size, unless `batch_size` is tuned."
    )
    image: PinnedImage | None = Field(
        default=None, description="Image to run (default: `training.image`)."
    )
    artifacts: ArtifactAccess = Field(default="none", description=ARTIFACT_ACCESS_HELP)
    active_deadline_seconds: Annotated[int, Field(ge=60)] = Field(
        default=21600, description="Stop a trial after this long."
    )
    bin_packing: bool = Field(
        default=False, description="Schedule with `gpu-binpack` (needs gpu.binPackingScheduler)."
    )

    @model_validator(mode="after")
    def _check(self) -> TrialSettings:
        if self.kind == "Job" and self.workers != 1:
            raise ConfigProblem(
                ("workers",), "a `Job` trial is one pod; use `kind: TFJob` for several workers"
            )
        return self


class ExperimentSettings(SettingsModel):
    name: str = Field(
        description="Experiment name (the Katib Experiment; its trials are named after it), at "
        "most 40 characters."
    )
    objective: ObjectiveSettings = Field(description="The metric to optimise.")
    algorithm: AlgorithmSettings = Field(
        default_factory=AlgorithmSettings, description="The search algorithm."
    )
    parameters: Annotated[list[ParameterSettings], Field(min_length=1)] = Field(
        description="The trainer flags to tune and their search space."
    )
    parallel_trial_count: Annotated[int, Field(ge=1)] = Field(
        default=2, description="Trials that run at once (each counts against the team's quota)."
    )
    max_trial_count: Annotated[int, Field(ge=1)] = Field(
        default=8, description="Trials in all; the experiment succeeds after this many."
    )
    max_failed_trial_count: Annotated[int, Field(ge=0)] = Field(
        default=2, description="Failed trials after which the experiment fails."
    )
    trial: TrialSettings = Field(
        default_factory=TrialSettings, description="How each trial runs `training.train`."
    )

    @model_validator(mode="after")
    def _check(self) -> ExperimentSettings:
        if not EXPERIMENT_NAME.match(self.name) or len(self.name) > MAX_EXPERIMENT_NAME:
            raise ConfigProblem(
                ("name",),
                f"{self.name!r}: Katib takes lower-case letters, digits and '-', starting with "
                f"a letter and ending with a letter or digit, at most {MAX_EXPERIMENT_NAME} "
                "characters",
            )
        refuse_duplicates(
            self.parameters, lambda p: p.name, ("parameters",), "parameter", field="name"
        )
        if self.parallel_trial_count > self.max_trial_count:
            raise ConfigProblem(
                ("parallelTrialCount",),
                f"{self.parallel_trial_count} trials at once is more than maxTrialCount "
                f"({self.max_trial_count}); lower it or raise maxTrialCount",
            )
        if self.max_failed_trial_count > self.max_trial_count:
            raise ConfigProblem(
                ("maxFailedTrialCount",),
                f"must not exceed maxTrialCount ({self.max_trial_count})",
            )
        if self.algorithm.name == "grid":
            self._check_grid()
        self._check_sampling()
        return self

    def _check_sampling(self) -> None:
        """Ranges the algorithm's suggestion service draws values outside of, or cannot use."""
        for index, parameter in enumerate(self.parameters):
            if self.algorithm.name in ("random", "tpe") and parameter.off_grid():
                raise ConfigProblem(
                    ("parameters", index, "step"),
                    f"`{self.algorithm.name}` rounds each value to a multiple of step "
                    f"({parameter.step}), so with min {parameter.min} and max {parameter.max} "
                    "a value can fall outside them; make min and max multiples of step, or "
                    "remove step",
                )
            if (
                self.algorithm.name == "bayesianoptimization"
                and parameter.type == "double"
                and Decimal(str(parameter.min)) <= 0
            ):
                raise ConfigProblem(
                    ("parameters", index, "min"),
                    "`bayesianoptimization` searches a `double` on a log scale, so min must be "
                    f"above 0, not {parameter.min}; raise min (e.g. 0.01), or use `random` or "
                    "`tpe`",
                )

    def _check_grid(self) -> None:
        sizes = []
        for index, parameter in enumerate(self.parameters):
            size = parameter.grid_size()
            if size is None:
                raise ConfigProblem(
                    ("parameters", index, "step"),
                    "grid search needs a `step` for a `double` range (the values it tries)",
                )
            sizes.append(size)
        combinations = math.prod(sizes)
        if self.max_trial_count > combinations:
            raise ConfigProblem(
                ("maxTrialCount",),
                f"grid search has only {combinations} combinations of these parameters; lower "
                "maxTrialCount to at most that, or widen the grid",
            )

    def tuned(self) -> list[str]:
        return [parameter.name for parameter in self.parameters]
