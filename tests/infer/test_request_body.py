"""A request body's instances, read one by one, and refused as soon as there are too many."""

import json
import time

import pytest

from bigmodel_jax.infer import request_body
from bigmodel_jax.infer.request_body import BodyError


@pytest.mark.parametrize('body, instances', [
    (b'{"inputs": [1, [2, 3], "x", {"a": null}]}', [1, [2, 3], 'x', {'a': None}]),
    (b' \n{ "inputs" :[ ] }\r\n', []),
    (b'{"\\u0069nputs": [0.5]}', [0.5]),  # an escaped key is the same key
    (b'{"inputs": 5}', 5),  # not a list: prepare_json says what "inputs" must be
    (b'{"inputs": [1e400]}', [float('inf')]),  # refused later, as a value out of range
])
def test_reads_what_json_loads_reads(body, instances):
  assert request_body.read_instances(body, max_instances=4) == instances
  assert json.loads(body)['inputs'] == instances


@pytest.mark.parametrize('body, message', [
    (b'{}', r'^give a JSON object \{"inputs": \[instance, \.\.\.\]\}$'),
    (b'[1]', r'give a JSON object .* \(at character 0\)'),
    (b'not json', r'give a JSON object .* \(at character 0\)'),
    (b'{"instances": [1]}', r'^give a JSON object'),
    (b'{"inputs": [1], "extra": 2}', r'give a JSON object .* \(at character 14\)'),
    (b'{"inputs": [1]} [2]', r'at character 15: text after the object'),
    (b'{"inputs": [1,]}', r'the body is not JSON: Expecting value: line 1 column 15'),
    (b'{"inputs": [NaN]}', r'^NaN is not a number the model takes$'),
    (b'{"inputs": [-Infinity]}', r'^-Infinity is not a number the model takes$'),
    (b'{"inputs": [' + b'[' * 100_000, r'nested too deeply'),
    (b'\xff{"inputs": []}', r'^the body is not UTF-8 JSON'),
    (b'{"inputs": [1, 2, 3, 4, 5]}', r'^more than 4 instances; at most 4 per request$'),
])
def test_bad_bodies_are_one_line_errors(body, message):
  with pytest.raises(BodyError, match=message) as error:
    request_body.read_instances(body, max_instances=4)
  assert '\n' not in str(error.value)


def test_too_many_instances_are_refused_without_reading_the_rest():
  """The rest of the body is not even JSON: reading stopped at the fifth instance."""
  body = b'{"inputs": [' + b'[0, 0],' * 4 + b'[0, 0], ' + b'%' * 1_000_000
  with pytest.raises(BodyError, match='more than 4 instances'):
    request_body.read_instances(body, max_instances=4)
  # And 100,000 instances (21 MB) are refused far faster than json.loads reads them.
  many = json.dumps({'inputs': [[[0] * 8] * 8] * 100_000}).encode()
  start = time.perf_counter()
  with pytest.raises(BodyError, match='more than 64 instances'):
    request_body.read_instances(many, max_instances=64)
  refused_s = time.perf_counter() - start
  start = time.perf_counter()
  json.loads(many)
  assert refused_s < (time.perf_counter() - start) / 10
