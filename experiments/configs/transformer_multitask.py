"""Multi-task Transformer: the Shakespeare character LM and the play-genre classifier trained
together on one trunk (README, Reuse).

`config.tasks` names each task's dataset, head and loss weight; every step trains on a batch of
each task and minimises the weighted sum of their losses. The trunk is the LM's (causal), so an
LM run initialises it through `init.workdir`, and it initialises the single-task models.
"""

from ml_collections import config_dict

from experiments.configs import base
from experiments.configs import transformer


def get_config():
  config = base.get_base_config()
  # The default LM's trunk, tied embeddings included (the 'lm' heads' output is the token
  # embedding), so that an LM run initialises it.
  trunk = {k: v for k, v in transformer.get_config().model.items() if k != 'name'}
  config.model = base.model('transformer_multitask', **{**trunk, 'causal': True})  # 'lm' heads

  # The tasks share the data options below (one tokenizer, one seq_len); config.data.name
  # stays 'multitask'.
  config.data.name = 'multitask'
  config.data.seq_len = 128
  config.data.tokenizer = 'char'            # a char vocabulary is the union of the tasks'

  # Per task: a dataset (text), its head ('lm' for a language-model dataset; 'mean' or 'last'
  # pooling for a classification dataset) and its weight in the summed loss.
  config.tasks = config_dict.ConfigDict()
  config.tasks.lm = config_dict.ConfigDict(
      {'dataset': 'shakespeare', 'head': 'lm', 'weight': 1.0})
  config.tasks.genre = config_dict.ConfigDict(
      {'dataset': 'shakespeare_genre', 'head': 'mean', 'weight': 1.0})

  config.batch_size = 32                    # of each task, every step
  config.num_steps = 1000
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.optimizer.b2 = 0.99
  config.optimizer.weight_decay = 0.1
  config.log_every = 100
  config.eval_every = 250
  config.eval_batches = 20
  config.checkpoint_every = 500
  return config
