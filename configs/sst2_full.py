"""SST-2, full run: a BiLSTM + CNN ensemble teacher distilled into a CNN student small enough for a microcontroller.

  python -m tfkd.train --config=configs/sst2_full.py --workdir=runs/sst2

Reads ../shared/data/sst2/{train,dev}.tsv (dev is the test split: GLUE's test
labels are not public). The vocabulary is built from the training phrases and
saved as workdir/vocab.txt; the int8 student takes int32 token ids [1, 48].
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.stages = ("teacher", "scratch", "distill", "export", "report")
  config.distribute = ""

  config.data = ml_collections.ConfigDict()
  config.data.source = "text"
  # Per-file columns: SST-2's train.tsv names its text column 'sentence', dev.tsv 'content'.
  config.data.train_file = ml_collections.ConfigDict(dict(
      path="../shared/data/sst2/train.tsv", label_column="label", text_column="sentence"))
  config.data.test_file = ml_collections.ConfigDict(dict(
      path="../shared/data/sst2/dev.tsv", label_column="label", text_column="content"))
  config.data.delimiter = ""             # '' = from the extension (.tsv tab, .csv comma)
  config.data.class_names = ("negative", "positive")
  config.data.vocab_size = 15000         # SST-2's training phrases have 14,817 distinct tokens
  config.data.max_length = 48            # the longest dev sentence has 47 tokens
  config.data.lowercase = True
  config.data.vocab_path = ""            # '' = workdir/vocab.txt (built once, then reused)
  # Whole training sentences held out (data.seed draws them), with the phrases found only inside
  # them: random phrase rows would sit inside training sentences and read ~93% (docs/text.md).
  config.data.val_unit = "sentence"      # 'sentence' or 'row'
  config.data.val_size = 800             # sentences (of 6,886); 7,209 rows leave training
  config.data.seed = 0
  config.data.train_limit = 0            # 0 = all training phrases
  config.data.augment = False            # image augmentation: always off for text
  # Tang et al. (2019) transfer set for the distill stage, labelled by the teacher: four
  # augmented copies of every training phrase (docs/text.md).
  config.data.transfer_set = ml_collections.ConfigDict(dict(
      copies=4, mask_probability=0.1, ngram_probability=0.25, ngram_range=(1, 5), seed=0))

  vocab_size = config.data.get_ref("vocab_size")
  config.teacher = ml_collections.ConfigDict()
  # Two different architectures, logits averaged: a better teacher than either alone.
  config.teacher.model = "text_ensemble"
  config.teacher.epochs = 0              # 0 = train.epochs
  config.teacher.kwargs = ml_collections.ConfigDict(dict(
      vocab_size=vocab_size, members=("text_bilstm", "text_cnn"),
      member_kwargs=(dict(embedding_dim=128, units=128, hidden=128),
                     dict(embedding_dim=128, filters=200, kernel_sizes=(3, 4, 5)))))

  config.student = ml_collections.ConfigDict()
  config.student.model = "text_cnn"
  config.student.kwargs = ml_collections.ConfigDict(dict(
      vocab_size=vocab_size, embedding_dim=48, filters=128, kernel_sizes=(3, 4, 5),
      hidden=0))                         # Dense + ReLU width after pooling; 0 = none

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128
  config.train.epochs = 3
  config.train.optimizer = "adamw"
  config.train.learning_rate = 2e-3
  config.train.momentum = 0.9            # sgd only
  config.train.weight_decay = 1e-4
  config.train.schedule = "onecycle"
  config.train.warmup_epochs = 0

  config.distill = ml_collections.ConfigDict()
  # Soft targets alone (α=0) at T=1, as Tang et al.: best of a sweep over α, T and copies
  # (docs/text.md; the sweep was scored on dev, the only labelled held-out set).
  config.distill.temperature = 1.0
  config.distill.student_loss_weight = 0.0
  config.distill.method = "soft"             # other losses: docs/distillation.md
  config.distill.weights = ()
  config.distill.extra_teachers = ()         # more teacher .keras paths; logits averaged with the teacher's
  config.distill.teacher_weights = ()        # weights of (teacher, *extra_teachers); () = equal

  config.export = ml_collections.ConfigDict()
  config.export.modes = ("float32", "int8")
  config.export.representative_size = 500

  config.report = ml_collections.ConfigDict()
  config.report.batch_size = 500
  config.report.latency_runs = 200
  config.report.warmup_runs = 20
  config.report.threads = 1
  return config
