"""CNN of the CIFAR-10 design (conv32-pool-conv64-pool-conv64-dense64-dense10), on digits by default."""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.model.name = 'cnn'
  config.model.conv_features = (32, 64, 64)
  config.model.dense_features = (64,)
  config.model.dropout_rate = 0.1
  config.model.dtype = 'float32'        # compute
  config.model.param_dtype = 'float32'
  config.data.name = 'digits'
  config.batch_size = 64
  config.num_steps = 600
  config.eval_every = 200
  return config
