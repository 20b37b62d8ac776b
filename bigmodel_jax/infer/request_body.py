"""The instances of a prediction request's body, `{"inputs": [instance, ...]}`, read one by one.

`json.loads` holds the interpreter lock for the whole body, and so stops the server's event loop
even from another thread: 14 MB of 100,000 small instances held it for about a second before
the instance count could be checked. Here the envelope is read by hand and each instance with
json's own `raw_decode`, so reading stops at the first instance past the limit and the lock is
let go between instances.
"""

import json
import re
from typing import Any

_SPACE = re.compile(r'[ \t\n\r]*')  # JSON's whitespace
_ENVELOPE = 'give a JSON object {"inputs": [instance, ...]}'


class BodyError(ValueError):
  """A body that is not `{"inputs": [...]}` JSON, or has too many instances; one line."""


def _no_constant(name: str) -> None:
  raise BodyError(f'{name} is not a number the model takes')


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def read_instances(body: bytes, max_instances: int) -> list[Any]:
  """The value of "inputs"; BodyError past `max_instances` of a list, before reading the rest."""
  try:
    text = body.decode('utf-8')
  except UnicodeDecodeError as e:
    raise BodyError(f'the body is not UTF-8 JSON: {e}') from None
  at = 0

  def skip(expected: str) -> None:
    nonlocal at
    at = _SPACE.match(text, at).end()
    if not text.startswith(expected, at):
      raise BodyError(f'{_ENVELOPE} (at character {at})')
    at += len(expected)

  def value() -> Any:
    nonlocal at
    at = _SPACE.match(text, at).end()
    try:
      parsed, at = _DECODER.raw_decode(text, at)
    except RecursionError:
      raise BodyError('the body is not JSON this server reads: its lists or objects are '
                      'nested too deeply') from None
    except json.JSONDecodeError as e:
      raise BodyError(f'the body is not JSON: {e}') from None
    return parsed

  skip('{')
  at = _SPACE.match(text, at).end()
  if not text.startswith('"', at) or value() != 'inputs':
    raise BodyError(_ENVELOPE)
  skip(':')
  at = _SPACE.match(text, at).end()
  if text.startswith('[', at):
    at += 1
    instances = []
    if not text.startswith(']', _SPACE.match(text, at).end()):
      while True:
        if len(instances) == max_instances:
          raise BodyError(f'more than {max_instances} instances; at most {max_instances} per '
                          'request')
        instances.append(value())
        at = _SPACE.match(text, at).end()
        if not text.startswith(',', at):
          break
        at += 1
    skip(']')
  else:  # not a list: the caller says what "inputs" must be
    instances = value()
  skip('}')
  if _SPACE.match(text, at).end() != len(text):
    raise BodyError(f'{_ENVELOPE} (at character {at}: text after the object)')
  return instances
