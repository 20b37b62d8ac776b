"""weights.bin of an exported model: its arrays one after another, as raw little-endian bytes.

The index (each array's name, dtype, shape, encoding and byte count, in the order the program
takes them) is in metadata.json, next to the file's SHA-256; the file itself is nothing but
array bytes, so a 10k-weight model carries no per-array headers (an .npz spends ~250 bytes on
each array's zip entry and .npy header). Reading it runs no code: `np.frombuffer` only.

Encodings:
  dense   the array's bytes;
  sparse  a bitmask of the non-zero positions (one bit per element, `np.packbits`, C order)
          followed by the non-zero values: for pruned kernels, 90% zeros store 0.525 bytes per
          float32 weight instead of 4. `encode` picks it wherever it is smaller than dense.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

DENSE, SPARSE = 'dense', 'sparse'


def _little_endian(array: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder('<'))


def encode(named_arrays: Sequence[tuple[str, np.ndarray]]) -> tuple[bytes, list[dict[str, Any]]]:
  """(the file's bytes, its index) for `named_arrays`, in their order."""
  chunks, index = [], []
  for name, array in named_arrays:
    array = _little_endian(np.asarray(array))
    nonzero = array != 0
    sparse_bytes = -(-array.size // 8) + int(nonzero.sum()) * array.itemsize
    if sparse_bytes < array.nbytes:
      chunk = np.packbits(nonzero, axis=None).tobytes() + array[nonzero].tobytes()
      encoding = SPARSE
    else:
      chunk, encoding = array.tobytes(), DENSE
    chunks.append(chunk)
    index.append({'name': name, 'dtype': array.dtype.name, 'shape': list(array.shape),
                  'encoding': encoding, 'bytes': len(chunk)})
  return b''.join(chunks), index


def decode(blob: bytes, index: Sequence[dict[str, Any]]) -> list[np.ndarray]:
  """The arrays of `blob` as `index` describes them.

  Raises:
    ValueError: the index does not describe `blob` (wrong sizes, dtypes or encodings).
    KeyError, TypeError: an index entry lacks a field or has one of the wrong type.
  """
  arrays, offset = [], 0
  for entry in index:
    dtype = np.dtype(entry['dtype']).newbyteorder('<')
    shape = tuple(int(d) for d in entry['shape'])
    size, length = int(np.prod(shape)), int(entry['bytes'])
    chunk = blob[offset:offset + length]
    if len(chunk) != length:
      raise ValueError(f'{entry["name"]}: {length} bytes from offset {offset} run past the end '
                       f'of the file ({len(blob)} bytes)')
    if entry['encoding'] == DENSE:
      if length != size * dtype.itemsize:
        raise ValueError(f'{entry["name"]}: {length} bytes for {size} {dtype.name} values')
      array = np.frombuffer(chunk, dtype).reshape(shape)
    elif entry['encoding'] == SPARSE:
      mask_bytes = -(-size // 8)
      mask = np.unpackbits(np.frombuffer(chunk[:mask_bytes], np.uint8), count=size).astype(bool)
      if length != mask_bytes + int(mask.sum()) * dtype.itemsize:
        raise ValueError(f'{entry["name"]}: {length} bytes for a {size}-bit mask and '
                         f'{int(mask.sum())} {dtype.name} values')
      array = np.zeros(size, dtype)
      array[mask] = np.frombuffer(chunk[mask_bytes:], dtype)
      array = array.reshape(shape)
    else:
      raise ValueError(f'{entry["name"]}: encoding {entry["encoding"]!r} is neither '
                       f'{DENSE!r} nor {SPARSE!r}')
    arrays.append(array.astype(dtype.newbyteorder('=')))
    offset += length
  if offset != len(blob):
    raise ValueError(f'the index covers {offset} of the file\'s {len(blob)} bytes')
  return arrays
