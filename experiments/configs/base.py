"""Fields every run has; the model files start from here and change what differs."""

from ml_collections import config_dict


def get_base_config() -> config_dict.ConfigDict:
  config = config_dict.ConfigDict()
  config.seed = 0

  # `name` plus fields of the model's config class (`models.config_fields(name)`); the sizes the
  # data decides (classes, vocabulary, context) come from the dataset, not from here.
  config.model = config_dict.ConfigDict()

  config.data = config_dict.ConfigDict()
  config.data.name = 'digits'          # --dataset; see README for the list
  config.data.data_dir = config_dict.placeholder(str)  # TFDS data_dir (None: TFDS default)
  config.data.seq_len = 128            # text: tokens per example
  config.data.tokenizer = 'char'       # text: 'char', 'byte', 'word' or 'bpe'
  config.data.vocab_size = 10_000      # word and bpe: ids learned from the train split
  config.data.target = config_dict.placeholder(str)    # csv: the target column
  config.data.test_fraction = 0.2      # embedded and csv sets: held-out test share
  config.data.validation_fraction = 0.1  # the validation share (see README, Datasets)
  # Seed of the random splits (None: config.seed). Set it to vary config.seed (initialisation,
  # shuffling, dropout) over one split, e.g. to compare runs on a test set none of them saw.
  config.data.split_seed = config_dict.placeholder(int)

  # Start from another run's parameters (README, Reuse) where this workdir has no checkpoint
  # yet: 'WORKDIR' (its newest intact step) or 'WORKDIR:STEP'. include/exclude: regexes over
  # '/'-joined parameter paths (include: all when empty); the rest starts from the seed.
  config.init = config_dict.ConfigDict()
  config.init.workdir = config_dict.placeholder(str)
  config.init.include = ()
  config.init.exclude = ()

  config.loss = config_dict.placeholder(str)  # None: the task's default
  config.batch_size = 128              # global batch (all devices, all micro-batches)
  config.grad_accum_steps = 1          # micro-batches per step
  config.strategy = 'auto'             # single | mesh | pmap | auto (mesh on >1 device)
  config.fsdp = False                  # mesh: split params and optimizer state over the devices
  # The device mesh (bigmodel_jax/parallel/mesh.py MeshConfig; README, Big models on TPU): axis
  # sizes, one of data/fsdp/tensor may be -1 (the rest); dcn_data: data parallel across slices.
  # rules: ((logical name, mesh axis or axes or None), ...) before parallel/rules.py's table.
  config.mesh = config_dict.ConfigDict()
  config.mesh.data = -1
  config.mesh.fsdp = 1
  config.mesh.tensor = 1
  config.mesh.dcn_data = 1
  config.mesh.rules = ()
  config.num_steps = 1000

  config.optimizer = config_dict.ConfigDict()
  config.optimizer.name = 'adamw'      # sgd | momentum | adam | adamw | muon
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'warmup_cosine'  # constant | warmup_cosine | step
  config.optimizer.warmup_steps = 50
  config.optimizer.min_lr_ratio = 0.1  # warmup_cosine: final lr / peak lr
  config.optimizer.decay_every = 1000  # step: steps between decays
  config.optimizer.decay_factor = 0.1  # step: lr multiplier at each decay
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.muon_beta = 0.95    # muon: momentum of the orthogonalised matrix updates
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 1e-4  # not applied to biases and norm scales
  config.optimizer.grad_clip_norm = 1.0  # 0 disables
  # Parameter groups by '/'-joined path (README, Reuse): regexes of leaves that never change,
  # and ((regex, factor), ...) scaling the learning rate of the leaves matched (first pair wins).
  config.optimizer.freeze = ()
  config.optimizer.lr_multipliers = ()

  # Adversarial training (Madry et al.) of image classifiers: each step trains on PGD examples
  # made from its batch with the current params (README, Robustness and explanations).
  config.adversarial = config_dict.ConfigDict()
  config.adversarial.enabled = False
  config.adversarial.eps = 0.1         # the attack budget, in pixel units of [0, 1] images
  config.adversarial.norm = 'linf'     # linf | l2
  config.adversarial.steps = 7         # PGD steps per training batch
  config.adversarial.step_size = config_dict.placeholder(float)  # None: 2.5 eps / steps
  config.adversarial.fraction = 1.0    # share of each batch replaced by adversarial examples

  # A NaN/Inf loss or gradient stops the run (naming the step and the last good checkpoint);
  # True skips such updates instead and logs how many were skipped.
  config.skip_nonfinite_updates = False

  # DP-SGD (README, Privacy): Poisson-sampled batches, per-example clipping, Gaussian noise.
  config.dp = config_dict.ConfigDict()
  config.dp.enabled = False
  config.dp.clip_norm = 1.0            # C: each example's gradient is scaled to norm <= C
  config.dp.noise_multiplier = 1.0     # sigma: noise std sigma * C on the summed gradient
  config.dp.target_epsilon = config_dict.placeholder(float)  # solve sigma for num_steps
  config.dp.delta = 1e-5               # epsilon is reported at this delta (< 1 / train size)
  config.dp.max_epsilon = config_dict.placeholder(float)  # end the run before exceeding it

  config.log_every = 100
  config.eval_every = 500
  config.eval_batches = 0              # 0: the whole validation split
  # Multi-host: how often the processes agree whether one of them got SIGTERM/SIGINT (one
  # small all-gather; every process then saves and stops at the same step).
  config.preemption_sync_every = 10
  config.checkpoint_every = 500
  config.keep_checkpoints = 3

  # jax.profiler trace of steps start_step .. start_step + num_steps - 1 into workdir/profile
  # (TensorBoard's profile plugin and Perfetto open it). num_steps 0: off, and free.
  config.profile = config_dict.ConfigDict()
  config.profile.start_step = 10
  config.profile.num_steps = 0
  return config


def add_transformer_options(model) -> None:
  """The options every transformer config shares (LM, classifier, multi-task), at their defaults."""
  model.attention_impl = 'explicit'  # or 'fused' (jax.nn.dot_product_attention; cuDNN on GPU)
  model.causal_block_size = 64       # explicit causal attention: queries per block
  model.dtype = 'float32'            # compute: 'bfloat16' on accelerators
  model.param_dtype = 'float32'
  model.scan_layers = False          # True: nn.scan over the blocks (flat compile time)
  model.remat = 'none'               # 'full', 'dots': recompute activations in backward
  model.lora_rank = 0                # > 0: LoRA adapters (README, Reuse)
  model.lora_alpha = 8.0
  model.lora_targets = 'attention/(query|value)'
