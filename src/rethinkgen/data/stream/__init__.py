"""Streamed image data: sets too large for memory (ImageNet, Table 2) read from disk batch by batch.

- :mod:`~rethinkgen.data.stream.labels`: the labels a run trains on, drawn once from its seed and stored
  with it (a label file with a sha256), the same in every epoch, DataLoader worker and DDP rank;
- :mod:`~rethinkgen.data.stream.pixels`: shuffled pixels, random pixels and Gaussian inputs per image,
  at the training resolution;
- :mod:`~rethinkgen.data.stream.transforms`: Inception preprocessing (random resized crop + flip;
  resize + centre crop), each image's randomness drawn from its own seed;
- :mod:`~rethinkgen.data.stream.loader`: the torch ``Dataset`` over an image index, the samplers
  (seeded, epoch-set order split over ranks) and the ``DataLoader``.
"""
