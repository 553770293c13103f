"""CIFAR-10, full run: ResNet-20 teacher distilled into a ResNet-8 student.

  python -m tfkd.train --config=configs/cifar10_resnet.py --workdir=runs/cifar10_resnet

Reads the class-folder copy in ../shared/data/cifar10-jpeg; for TFDS use
--config.data.source=tfds (and --config.data.tfds_data_dir=...).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.stages = ("teacher", "scratch", "distill", "export", "report")
  # '' = one device; 'mirrored' = all local GPUs/CPUs; 'multiworker' = TF_CONFIG cluster.
  config.distribute = ""

  config.data = ml_collections.ConfigDict()
  config.data.source = "folder"          # 'folder' (train/ and test/ class subfolders) or 'tfds'
  config.data.path = "../shared/data/cifar10-jpeg"
  config.data.tfds_name = "cifar10"
  config.data.tfds_data_dir = ""         # '' = TFDS default (~/tensorflow_datasets)
  config.data.image_size = (32, 32)
  config.data.val_size = 5000            # carved from train, shuffled with data.seed
  config.data.seed = 0
  config.data.train_limit = 0            # 0 = all training images
  config.data.augment = True             # pad-4 random crop + horizontal flip

  config.teacher = ml_collections.ConfigDict()
  config.teacher.model = "resnet20"
  config.teacher.epochs = 80             # 0 = train.epochs

  config.student = ml_collections.ConfigDict()
  config.student.model = "resnet8"

  # Shared by the scratch and distill stages (same epochs and schedule), and the teacher.
  # 80 epochs each reach 87.1% (teacher) and 85.5% (distilled ResNet-8 int8), ~3.4 h on
  # 2 CPU cores (BENCHMARKS.md, section 1).
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128
  config.train.epochs = 80
  config.train.optimizer = "sgd"         # 'sgd' (Nesterov momentum) or 'adamw'
  config.train.learning_rate = 0.1
  config.train.momentum = 0.9
  config.train.weight_decay = 5e-4
  config.train.schedule = "onecycle"     # 'onecycle', 'cosine' or 'constant'
  config.train.warmup_epochs = 1         # cosine only

  config.distill = ml_collections.ConfigDict()
  config.distill.temperature = 4.0
  config.distill.student_loss_weight = 0.1   # α: α·CE + (1−α)·Σ wᵢ·lossᵢ
  # Losses joined by '+': soft, features, attention, contrastive, relational (docs/distillation.md).
  config.distill.method = "soft"
  config.distill.weights = ()                # one weight per loss in method; () = 1 each
  config.distill.teacher_layer = "stage3"    # features/attention: teacher layer read
  config.distill.student_layer = "stage3"    # features/attention: student layer read
  config.distill.feature_adapter = "auto"    # features: 'auto' (1x1 conv/dense if widths differ), 'always', 'never'
  config.distill.embedding_layer = "features"  # contrastive/relational: embedding layer of both models
  config.distill.projection_dim = 128        # contrastive: width of the projection heads
  config.distill.contrastive_temperature = 0.1  # contrastive: τ
  config.distill.extra_teachers = ()         # more teacher .keras paths; logits averaged with the teacher's
  config.distill.teacher_weights = ()        # weights of (teacher, *extra_teachers); () = equal
  config.distill.cached_teacher = False      # teacher logits computed once; needs data.augment=False
  config.distill.teacher_logits_path = ""    # .npy [train examples, classes] in tfkd's train order; implies cached

  config.export = ml_collections.ConfigDict()
  config.export.modes = ("float32", "int8")
  config.export.representative_size = 500    # training images for int8 calibration

  config.report = ml_collections.ConfigDict()
  config.report.batch_size = 500
  config.report.latency_runs = 200
  config.report.warmup_runs = 20
  config.report.threads = 1
  return config
