"""The loop each sweep process runs: claim a trial, run it, tell Optuna; until N have finished.

Claims. A process running trial K holds an flock on `<sweepdir>/trials/K.claim`; the kernel
drops it when the process dies, however it dies (SIGKILL included). So a trial that Optuna still
calls RUNNING but whose claim nobody holds was interrupted, and the next process to look resumes
it under its own number, in its own workdir, from that workdir's newest checkpoint, with the
parameters Optuna stored for it. Claiming (resume or `study.ask`) happens under one flock on
`<sweepdir>/.sweep.lock`, so two processes never take the same trial and the study ends with
exactly `num_trials` finished trials, however many processes share it. A RUNNING trial with no
claim file in this sweep directory belongs to a process that uses another directory (a host
sharing only the database): it is left alone, and then the total is exact only up to the trials
such processes start at the same moment.

Finished: COMPLETE, PRUNED, or FAIL because the point of the space diverged or made a config the
run refuses (kept, with the reason, in the trial's 'error' attribute). A trial that crashed on a
bug is FAIL without that reason, does not count, and the exception ends the process.
"""

import dataclasses
import os
from typing import Callable

import optuna
from absl import logging

from bigmodel_jax.config import Config
from bigmodel_jax.errors import Preempted
from bigmodel_jax.run import lock
from bigmodel_jax.search import space as space_lib
from bigmodel_jax.search import trial as trial_lib

SWEEP_LOCK = '.sweep.lock'
TrialState = optuna.trial.TrialState


def claim_path(sweepdir: str, number: int) -> str:
  return os.path.join(sweepdir, trial_lib.TRIALS, f'{number}.claim')


def counts(trial: optuna.trial.FrozenTrial) -> bool:
  """Whether `trial` is one of the study's finished trials (see the module docstring)."""
  return (trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
          or (trial.state == TrialState.FAIL and trial_lib.ERROR_ATTR in trial.user_attrs))


@dataclasses.dataclass
class Sweep:
  sweepdir: str
  study: optuna.Study
  space: space_lib.SearchSpace
  config: Config
  metric: str
  num_trials: int

  def finished(self) -> int:
    return sum(counts(t) for t in self.study.get_trials(deepcopy=False))

  def _claim_next(self) -> tuple[optuna.Trial, lock.Flock, bool] | None:
    """The next trial for this process, with its claim held: (trial, claim, resumed)."""
    os.makedirs(os.path.join(self.sweepdir, trial_lib.TRIALS), exist_ok=True)
    with lock.Flock(os.path.join(self.sweepdir, SWEEP_LOCK)):
      trials = self.study.get_trials(deepcopy=False)
      finished = sum(counts(t) for t in trials)
      if finished >= self.num_trials:
        return None
      live = 0
      for frozen in trials:
        if frozen.state != TrialState.RUNNING:
          continue
        path = claim_path(self.sweepdir, frozen.number)
        claim = lock.Flock(path)
        if not os.path.exists(path) or not claim.acquire(blocking=False):
          live += 1  # run by a live process (here or on a host with another sweep directory)
          continue
        # Unclaimed: its process died. (Its process tells Optuna before it lets the claim go,
        # so the state read now is final if it finished in the meantime.)
        if self.study._storage.get_trial(frozen._trial_id).state != TrialState.RUNNING:  # pylint: disable=protected-access
          claim.release()
          continue
        return optuna.Trial(self.study, frozen._trial_id), claim, True  # pylint: disable=protected-access
      if finished + live >= self.num_trials:
        return None  # the live processes are running the rest
      trial = self.study.ask()
      claim = lock.Flock(claim_path(self.sweepdir, trial.number))
      claim.acquire()
      return trial, claim, False

  def run(self, after_trial: Callable[[], None] = lambda: None) -> list[int]:
    """Runs trials until the study has `num_trials` finished ones; the numbers this process ran."""
    ran = []
    while (claimed := self._claim_next()) is not None:
      trial, claim, resumed = claimed
      directory = trial_lib.workdir(self.sweepdir, trial.number)
      logging.info('Trial %d %s in %s', trial.number,
                   'resumes (it was interrupted)' if resumed else 'starts', directory)
      try:
        outcome = trial_lib.run(trial, space=self.space, config=self.config,
                                sweepdir=self.sweepdir, metric=self.metric)
        if outcome.state == TrialState.COMPLETE:
          self.study.tell(trial, outcome.value)
        else:
          self.study.tell(trial, state=outcome.state)
      except Preempted:
        raise  # the trial stays RUNNING with its checkpoint; the next run resumes it
      except BaseException:
        self.study.tell(trial, state=TrialState.FAIL)  # a bug: not counted, not retried
        raise
      finally:
        claim.release()
      ran.append(trial.number)
      logging.info('Trial %d %s (%d of %d finished)', trial.number, outcome.message,
                   self.finished(), self.num_trials)
      after_trial()
    return ran
