"""CNN of the CIFAR-10 design (conv32-pool-conv64-pool-conv64-dense64-dense10), on digits by default."""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.model = base.model('cnn', conv_features=(32, 64, 64), dense_features=(64,),
                            dropout_rate=0.1)
  config.data.name = 'digits'
  config.batch_size = 64
  config.num_steps = 600
  config.eval_every = 200
  return config
