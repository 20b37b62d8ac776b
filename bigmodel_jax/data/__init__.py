"""Every input the trainers consume: datasets by name, tokenizers, and the batch pipeline."""

from bigmodel_jax.data.dataset import Dataset
from bigmodel_jax.data.spec import DataSpec
from bigmodel_jax.data.spec import Normalization
from bigmodel_jax.data.spec import SpecError
from bigmodel_jax.data.spec import SPLITS
from bigmodel_jax.data.spec import TaskEntry
from bigmodel_jax.data.dataset import Source
from bigmodel_jax.data.multitask import load_multitask
from bigmodel_jax.data.pipeline import eval_batches
from bigmodel_jax.data.pipeline import merge_task_batches
from bigmodel_jax.data.pipeline import multitask_train_batches
from bigmodel_jax.data.pipeline import train_batches
from bigmodel_jax.data.registry import DATASETS
from bigmodel_jax.data.registry import dataset_task
from bigmodel_jax.data.registry import load_dataset
from bigmodel_jax.data.tabular import normalize_features
from bigmodel_jax.data.tabular import read_csv
from bigmodel_jax.data.tokenizers import ByteTokenizer
from bigmodel_jax.data.tokenizers import CharTokenizer
from bigmodel_jax.data.tokenizers import PAD_ID
from bigmodel_jax.data.tokenizers import Tokenizer
from bigmodel_jax.data.tokenizers import tokenizer_from_dict
