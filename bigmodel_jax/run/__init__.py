"""What a run is on disk: layout and run files, the workdir lock, resume rules, checkpoints,
and loading a trained run. Commands that use a trained run need nothing from the trainer."""
