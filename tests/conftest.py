"""Eight fake CPU devices for the whole test session, so multi-device strategies run on CPU.

Set through jax's config rather than XLA_FLAGS so subprocesses that tests start (the commands,
as a researcher runs them) keep seeing the machine's real single CPU device.
"""

import jax

jax.config.update('jax_num_cpu_devices', 8)
