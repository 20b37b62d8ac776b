import json

from bigmodel_jax.train.writers import MetricWriter


def test_resumed_writer_drops_records_after_the_checkpoint_and_a_torn_line(tmp_path):
  with MetricWriter(str(tmp_path)) as writer:
    for step in (2, 4, 6):
      writer.write(step, 'train', {'loss': float(step)})
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 8, "split": "tr')  # a write cut by a kill
  with MetricWriter(str(tmp_path), resume_step=4) as writer:
    writer.write(6, 'train', {'loss': 0.5})
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [(r['step'], r['loss']) for r in records] == [(2, 2.0), (4, 4.0), (6, 0.5)]
