"""A workdir lock on object storage (gs://), where there is no flock: a lease in an object.

The lock is the object `workdir/.lock`, holding its holder's name and the time its lease ends.
  * Taking it: the object is created only if absent (GCS precondition ifGenerationMatch=0), so of
    two runs starting at once exactly one succeeds.
  * Holding it: a thread rewrites it every LEASE_SECONDS / 4 with a later end, each time only if
    it is still the version this holder wrote (ifGenerationMatch=its generation).
  * A dead holder (killed, its VM gone) stops renewing; once its lease has ended, a new run
    replaces the object, again only if it is the version it read, so of two runs taking over at
    once one succeeds.
  * Releasing: the object is deleted if it is still this holder's.
The guarantee: one holder at a time, as long as a live holder reaches the bucket at least once per
lease and the machines' clocks agree to within seconds (cloud VMs keep them by NTP). A holder
whose renewal finds the object replaced (it was cut off for a whole lease) has lost the lock: it
logs why and interrupts its main thread, so the run stops instead of writing beside the new one.
"""

import _thread
import json
import os
import socket
import threading
import time

from absl import logging
from google.api_core import exceptions
from google.cloud import storage

from bigmodel_jax.errors import UserInputError

LEASE_SECONDS = 20.0


def _bucket_and_key(url: str) -> tuple[str, str]:
  bucket, _, key = url.removeprefix('gs://').partition('/')
  return bucket, key


class BucketLock:
  """Context manager holding the lease object `path` (gs://bucket/...) for a run in `workdir`."""

  def __init__(self, path: str, workdir: str, lease_seconds: float = LEASE_SECONDS):
    self.path = path
    self._workdir = workdir
    self._lease = lease_seconds
    bucket, key = _bucket_and_key(path)
    # google-cloud-storage finds the credentials (the VM's service account, or none where
    # STORAGE_EMULATOR_HOST names an emulator); gcsfs has no write preconditions.
    self._blob = storage.Client().bucket(bucket).blob(key)
    self._holder = f'process {os.getpid()} on {socket.gethostname()}'
    self._generation: int | None = None
    self._stop = threading.Event()
    self._heartbeat: threading.Thread | None = None

  def _record(self) -> str:
    return json.dumps({'holder': self._holder, 'lease_ends': time.time() + self._lease})

  def __enter__(self) -> 'BucketLock':
    try:
      self._blob.upload_from_string(self._record(), if_generation_match=0)
    except exceptions.PreconditionFailed:
      self._take_over()
    except exceptions.NotFound:
      raise UserInputError(f'is in bucket {self._blob.bucket.name}, which does not exist; create '
                           'it (gcloud storage buckets create) or name another', subject='workdir',
                           value=self._workdir) from None
    except exceptions.Forbidden as e:
      raise UserInputError(f'cannot be written with these credentials ({e.message})',
                           subject='workdir', value=self._workdir) from None
    self._generation = self._blob.generation
    self._heartbeat = threading.Thread(target=self._renew, name='workdir-lock', daemon=True)
    self._heartbeat.start()
    return self

  def _take_over(self) -> None:
    """Replaces the lock object if its holder's lease has ended; UserInputError if not."""
    current = self._blob.bucket.get_blob(self._blob.name)
    if current is None:  # released between our two requests: create it again
      self._blob.upload_from_string(self._record(), if_generation_match=0)
      return
    try:
      record = json.loads(current.download_as_text(if_generation_match=current.generation))
      holder, lease_ends = str(record['holder']), float(record['lease_ends'])
    except (ValueError, KeyError, TypeError, exceptions.PreconditionFailed):
      holder, lease_ends = 'another process', time.time() + self._lease
    if lease_ends > time.time():
      raise UserInputError(
          f'is in use by {holder} (its lease on {self.path} is renewed while it runs, and ends '
          f'in {lease_ends - time.time():.0f} s if it stopped); wait for that run to end (or stop '
          'it), or choose another workdir', subject='workdir', value=self._workdir)
    try:
      self._blob.upload_from_string(self._record(), if_generation_match=current.generation)
    except exceptions.PreconditionFailed:
      raise UserInputError('was just taken by another run; choose another workdir',
                           subject='workdir', value=self._workdir) from None
    logging.info('Taking over the lock of %s, whose lease ended (it is no longer running).',
                 holder)

  def _renew(self) -> None:
    while not self._stop.wait(self._lease / 4):
      try:
        self._blob.upload_from_string(self._record(), if_generation_match=self._generation)
        self._generation = self._blob.generation
      except exceptions.PreconditionFailed:
        logging.error('Lost the lock %s: another run took it over after this one could not renew '
                      'its lease for %.0f s. Stopping.', self.path, self._lease)
        self._generation = None
        _thread.interrupt_main()
        return
      except exceptions.GoogleAPICallError as e:  # transient: the lease leaves time to retry
        logging.warning('Could not renew the lock %s (%s); retrying.', self.path, e)

  def __exit__(self, *exc_info) -> None:
    self._stop.set()
    self._heartbeat.join()
    if self._generation is not None:
      try:
        self._blob.delete(if_generation_match=self._generation)
      except (exceptions.NotFound, exceptions.PreconditionFailed):
        pass  # no longer ours
