"""Hyper-parameter search on Optuna: each trial an ordinary run in the sweep's `trials/<number>/`.

    space.py    the search-space file (`def space(trial) -> {config field: value}`), checked
                against the config before anything is written
    study.py    the Optuna storage (a journal file in the sweep directory by default), sampler,
                pruner and the study, which remembers the config and metric it was made for
    trial.py    one trial: its config, its run, and the hook that reports the validation metric
                to Optuna after each evaluation and prunes the run when Optuna says so
    worker.py   the loop one process runs: claim a trial (an interrupted one first), run it, tell
                Optuna, until the study has its number of finished trials
    results.py  results.csv, best_config.py and the plots
"""
