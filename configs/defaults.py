"""The base config: every key tfkd reads, with its default and what it means.

Case configs (cifar10_resnet.py, sst2_full.py, ...) start from `get_config()`
and override what differs, so every key exists in every config and can be set
on the command line (`--config.distill.temperature=2`). `tfkd.from_config`
is the one module that reads these blocks; it also checks a config that was
not built from this one and refuses keys this file does not have.

To add a setting: add it here with its default and a one-line comment, read it
in `tfkd/from_config.py` (or the stage that uses it), and pass it on as a plain
argument.

Example:
  config = defaults.get_config()
  config.data.path = "/data/my_images"
"""

import ml_collections


def _data():
  data = ml_collections.ConfigDict()
  data.source = "folder"          # 'folder' (train/ and test/ class subfolders), 'tfds' or 'text'
  data.path = "../shared/data/cifar10-jpeg"  # folder source: holds train/<class>/ and test/<class>/
  data.tfds_name = "cifar10"      # tfds source: the TFDS dataset name
  data.tfds_data_dir = ""         # tfds source: data_dir; '' = TFDS default (~/tensorflow_datasets)
  data.image_size = ()            # (height, width) to resize to (bilinear); () = the images' own size
  data.channels = 0               # folder: 1 (greyscale) or 3 (RGB); 0 = 1 if every image is grey, else 3
  data.val_size = 5000            # examples (text with val_unit='sentence': sentences) carved from train
  # Small data (tfkd/small_data.py, logged in one line): a val_size over 20% of the images becomes
  # 10%, and the batch size (learning rates with it) shrinks so an epoch has 50 steps. False = as given.
  data.adapt = True
  data.val_unit = "row"           # text only: 'row' or 'sentence' (whole sentences and their phrases)
  data.seed = 0                   # draws the validation split
  data.train_limit = 0            # use only the first N training examples; 0 = all
  # Share of training images that keep their label: class-stratified, drawn with data.seed, the same
  # in every stage. The rest are unlabelled (-1): supervised stages skip them, distillation stages
  # learn them from the teacher alone. 1.0 = every label.
  data.label_fraction = 1.0
  data.augment = True             # images: random crop (padding 1/8 of the side) + horizontal flip
  # The key of the augmented views (and so of the teacher-logit cache); -1 = config.seed. Runs of
  # other seeds with the same view_seed see the same views (weights and batch order still differ),
  # so they can share one cache (distill.cache_dir) and the teacher is paid once for all of them.
  data.view_seed = -1
  # Text source: one labelled table per split, each with its own column names.
  data.train_file = ml_collections.ConfigDict(dict(path="", label_column="label", text_column="sentence"))
  data.test_file = ml_collections.ConfigDict(dict(path="", label_column="label", text_column="sentence"))
  data.delimiter = ""             # text: '' = from the extension (.tsv tab, .csv comma)
  data.class_names = ()           # text: label values in class order; () = sorted labels of train
  data.vocab_size = 15000         # text: tokens kept, most frequent first (with padding and unknown)
  data.max_length = 48            # text: token ids per example (longer texts are cut)
  data.lowercase = True           # text: lower-case before tokenizing
  data.vocab_path = ""            # text: '' = workdir/vocab.txt (built once, then reused)
  # Distill stage, text only: augmented copies of the training rows the teacher labels (Tang et al. 2019).
  data.transfer_set = ml_collections.ConfigDict(dict(
      copies=0,                   # augmented copies of every training row; 0 = no transfer set
      mask_probability=0.1,       # share of tokens replaced by the <mask> token
      ngram_probability=0.25,     # share of copies cut to a random n-gram
      ngram_range=(1, 5),         # n of those n-grams, inclusive
      long_copies=0,              # more copies of each row of at least long_min_tokens tokens
      long_min_tokens=15,
      seed=0))
  return data


def _model(name: str, epochs: int = -1):
  model = ml_collections.ConfigDict()
  model.model = name              # a name in tfkd.models.MODELS (resnet8, resnet20, ds_cnn, text_cnn, ...)
  model.kwargs = ml_collections.ConfigDict()  # extra keyword arguments of that builder
  if epochs >= 0:  # the teacher
    model.epochs = epochs         # 0 = train.epochs
    # A trained Keras classifier file (.keras, .h5, SavedModel) to distil from instead of training
    # `model`: raw pixels in [0, 255] in, logits or probabilities out (docs/distillation.md).
    model.path = ""
    # The teacher that distils, made by the 'teacher_compress' stage (docs/distillation.md): 'none',
    # 'prune' (tfmot, fine-tuned on the labels), 'int8' (full-integer TFLite on LiteRT; teaches through
    # distill.cached_teacher), 'float16' or 'bfloat16' (the teacher computing in that precision).
    model.compress = "none"
    model.prune_sparsity = 0.5    # compress='prune': share of each conv/dense kernel set to zero
    model.prune_epochs = 5        # compress='prune': fine-tuning epochs (compress.train's rate, schedule)
  return model


def _train():
  train = ml_collections.ConfigDict()
  train.batch_size = 128
  train.epochs = 80
  train.optimizer = "sgd"         # 'sgd' (Nesterov momentum) or 'adamw'
  train.learning_rate = 0.1       # peak rate of the schedule
  train.momentum = 0.9            # sgd only
  train.weight_decay = 5e-4       # decoupled; not applied to BatchNorm and biases
  train.schedule = "onecycle"     # 'onecycle', 'cosine' or 'constant'
  train.warmup_epochs = 0         # cosine only: linear warm-up from a tenth of the rate
  # 'float32', or 'mixed_bfloat16': bfloat16 arithmetic, float32 weights and saved models
  # (tfkd.precision); about 2x faster on CPUs with AMX, slower where bfloat16 is emulated.
  train.precision = "float32"
  return train


def _distill():
  distill = ml_collections.ConfigDict()
  distill.temperature = 4.0                  # soft targets: T
  distill.student_loss_weight = 0.1          # α: α·CE + (1−α)·Σ wᵢ·lossᵢ
  # Losses joined by '+': soft, logits, features, attention, contrastive, relational (docs/distillation.md).
  distill.method = "soft"
  distill.weights = ()                       # one weight per loss in method; () = 1 each
  distill.teacher_layer = "stage3"           # features/attention: teacher layer read
  distill.student_layer = "stage3"           # features/attention: student layer read
  distill.feature_adapter = "auto"           # features: 'auto' (1x1 conv/dense if widths differ), 'always', 'never'
  distill.embedding_layer = "features"       # contrastive/relational: embedding layer of both models
  distill.projection_dim = 128               # contrastive: width of the projection heads
  distill.contrastive_temperature = 0.1      # contrastive: τ
  distill.extra_teachers = ()                # more teacher .keras paths; logits averaged with the teacher's
  distill.teacher_weights = ()               # weights of (teacher, *extra_teachers); () = equal
  # Stop when a teacher is at chance or its BatchNorm statistics never settled (tfkd/teacher_checks.py);
  # False = only warn and distil anyway.
  distill.check_teacher = True
  # The teacher's cost paid once: its logits for cache_epochs epochs of training views (augmented
  # or not) computed by the 'teacher_views' stage into distill.cache_dir, and read by the
  # distill, prune, qat, prune_qat and multitask stages instead of running the teacher; the
  # multitask stage caches the task-B teacher's into workdir/teacher_views_b/ (docs/distillation.md).
  distill.cached_teacher = False
  distill.cache_epochs = 1                   # E; a longer run cycles them (epoch e reads e mod E)
  distill.cache_storage = "float16"          # 'float16' (every logit) or 'top_k' (many classes)
  distill.cache_top_k = 5                    # top_k storage: classes kept per view
  distill.cache_batch_size = 1024            # teacher inference batch while filling the cache
  # The cache's folder; '' = workdir/teacher_views. Runs of the same teacher, training data and
  # views (data.view_seed) can name one folder: the first fills it, the others read it (a cache of
  # more epochs serves fewer); any other run is refused (the cache's fingerprint), never served
  # other logits.
  distill.cache_dir = ""
  # Logits from another framework's teacher: .npy [train examples, classes] (un-augmented) or
  # [E, examples, classes] for the views tfkd.views makes; implies cached_teacher.
  distill.teacher_logits_path = ""
  # Adversarially robust distillation (tfkd/adversarial.py, docs/distillation.md): each step attacks
  # the student and the distillation losses read it on the adversarial images (distill and compression).
  distill.adversarial = ml_collections.ConfigDict(dict(
      method="none",              # 'none', 'ard' (Goldblum et al. 2020) or 'rslad' (Zi et al. 2021)
      attack="pgd",               # 'pgd' (steps of step_size from a random start) or 'fgsm' (one step of epsilon)
      epsilon=8.0,                # L∞ radius in raw pixels (0-255): 8 = 8/255 of the range
      step_size=2.0,              # pgd: pixels per step
      steps=10,                   # pgd: steps per training batch
      random_start=True,          # pgd: start at a uniform random point of the ball
      weight=0.0))                # β, adversarial share of the distillation loss; 0 = the method's (ard 1, rslad 5/6)
  return distill


def _selfsup():
  selfsup = ml_collections.ConfigDict()
  # The self-supervised route (docs/distillation.md): stage 'selfsup_pretrain' distils the teacher into
  # the student with SEED (Fang et al. 2021) on every training image, no label read; stage 'selfsup'
  # then trains the classifier on the labelled images (data.label_fraction).
  selfsup.embedding_layer = "features"   # teacher and student layer SEED compares (spatially averaged)
  selfsup.queue_size = 4096              # K: past teacher embeddings kept (FIFO) to compare against
  selfsup.teacher_temperature = 0.01     # τ_T of the teacher's similarity distribution
  selfsup.student_temperature = 0.2      # τ_S of the student's
  selfsup.epochs = 0                     # SEED epochs over every training image; 0 = train.epochs
  selfsup.head = "fine_tune"             # 'fine_tune' (every weight) or 'linear' (backbone frozen)
  selfsup.head_epochs = 0                # epochs over the labelled images; 0 = train.epochs
  selfsup.head_learning_rate = 0.0       # peak rate of the head stage; 0 = train.learning_rate
  return selfsup


def _compress():
  compress = ml_collections.ConfigDict()
  # Layers with weights that tfmot cannot prune: 'skip' (left dense, named in a warning) or 'error'.
  compress.unsupported = "skip"
  # Fine-tuning with the teacher in prune, qat and prune_qat: these keys replace config.train's.
  compress.train = ml_collections.ConfigDict()
  compress.train.epochs = 45
  compress.train.learning_rate = 0.01
  compress.train.schedule = "cosine"
  compress.train.warmup_epochs = 0
  compress.prune = ml_collections.ConfigDict()
  compress.prune.sparsity = 0.75             # share of each conv/dense kernel set to zero
  compress.prune.m_by_n = ()                 # (2, 4) = 2:4 structured sparsity instead (sparsity ignored)
  compress.prune.end_fraction = 0.5          # target reached after this share of the steps
  compress.prune.frequency = 100             # steps between mask updates
  compress.qat = ml_collections.ConfigDict()  # qat and prune_qat; 0 = compress.train's value
  compress.qat.epochs = 5
  compress.qat.learning_rate = 0.001
  return compress


def _search():
  search = ml_collections.ConfigDict()
  # python -m tfkd.search: students drawn from `space`, measured int8 on LiteRT/TFLM, those that
  # do not fit the device rejected untrained, the rest trained `epochs` each (weak ones stopped).
  search.devices = ("mlperf_tiny",)        # names in search.profiles; one study per device and mode
  search.modes = ("distill", "scratch")    # 'distill' (from the teacher's cached views), 'scratch'
  search.trials = 30                       # trained or stopped trials per study (rejected or
                                           # repeated ones do not count)
  search.max_rejected = 200                # give up after this many architectures that do not fit
  search.max_repeated = 1000               # ... or this many draws of tried ones, fitting or
                                           # not (TPE settling; each takes under a second)
  search.epochs = 15                       # epochs per trial (weak trials stop earlier)
  search.final_epochs = 0                  # the winner's full retrain; 0 = train.epochs
  search.storage = ""                      # Optuna storage URL; '' = sqlite in workdir/search/
  search.seed = 0                          # the sampler's seed
  search.start_from = ()                   # candidates each study tries first, e.g. the student
                                           # you have: (dict(family="resnet", resolution=32,
                                           # blocks=(1, 1, 1), widths=(16, 32, 64)),)
  search.min_epochs = 2                    # Hyperband: epochs before a trial can be stopped
  search.batch_norm_batches = 20           # each validation reads BatchNorm statistics
                                           # re-estimated from this many training batches
                                           # (tfkd.batch_norm); 0 = the moving averages
  search.reduction_factor = 3              # Hyperband: keep about 1/this of trials per rung
  search.latency_runs = 50                 # timed LiteRT invokes per candidate
  search.latency_spread_s = 60.0           # the report's final timing of all candidates spans this
                                           # long, past the machine's slow spells (seconds)
  # Device budgets: flash for the int8 .tflite and TFLM arena in bytes; latency (LiteRT ms on this
  # machine, 1 thread) and MACs are optional limits (0 = none).
  search.profiles = ml_collections.ConfigDict(dict(
      mlperf_tiny=ml_collections.ConfigDict(dict(
          flash_bytes=100 * 1024, arena_bytes=64 * 1024, latency_ms=0.0, macs=0)),
      small_mcu=ml_collections.ConfigDict(dict(
          flash_bytes=64 * 1024, arena_bytes=32 * 1024, latency_ms=0.0, macs=0))))
  search.space = ml_collections.ConfigDict()
  search.space.families = ("resnet", "ds_cnn", "mobilenet_v2")
  search.space.resolutions = ()            # square input sizes to try; () = the data's own size
  search.space.resnet = ml_collections.ConfigDict(dict(
      blocks=(1, 2),                       # residual blocks per stage (3 stages), inclusive range
      widths=(8, 16, 24, 32, 48, 64)))     # filters of each stage, drawn per stage
  search.space.ds_cnn = ml_collections.ConfigDict(dict(
      blocks=(3, 6),                       # separable blocks, inclusive range
      widths=(16, 24, 32, 48, 64)))        # first block's filters (doubled at stride-2 blocks)
  search.space.mobilenet_v2 = ml_collections.ConfigDict(dict(
      blocks=(1, 3),                       # inverted residual blocks per stage (3 stages)
      width_multipliers=(0.25, 0.35, 0.5, 0.75, 1.0),
      expansions=(2, 3, 4, 6)))
  return search


def _graph():
  graph = ml_collections.ConfigDict()
  # python -m tfkd.graph only: GCN teacher → MLP from scratch → GLNN MLP (docs/distillation.md).
  graph.source = "csbm"           # 'csbm' (generated at path if missing) or 'npz' (read from path)
  graph.path = ""                 # the graph .npz (tfkd/graph_data.py layouts); '' = workdir/graph.npz
  graph.split_seed = 0            # npz without splits: seed of the Planetoid-style splits drawn
  graph.held_out = 0.5            # share of test nodes unseen in training (GLNN's inductive setting)
  # The contextual stochastic block model written when source='csbm' (Deshpande et al. 2018).
  graph.csbm = ml_collections.ConfigDict(dict(
      nodes=2500,                 # N
      classes=5,                  # C
      features=128,               # F
      average_degree=8.0,         # expected neighbours per node
      homophily=0.8,              # expected share of edges inside a class
      feature_signal=2.5,         # class centre's distance from the origin, in noise std devs
      train_per_class=20,         # labelled nodes per class (Planetoid: 20)
      val_size=500,               # validation nodes
      test_size=1000,             # test nodes
      seed=0))                    # classes, features, edges and splits
  graph.teacher = ml_collections.ConfigDict(dict(
      hidden=64,                  # GCN hidden width (Kipf & Welling: 16)
      dropout=0.5,                # on the input and the hidden layer
      weight_decay=5e-4))         # L2 on the first layer
  graph.student = ml_collections.ConfigDict(dict(
      hidden=(64,),               # MLP hidden widths (scratch and GLNN alike)
      dropout=0.5,                # after each hidden layer
      weight_decay=5e-4))         # L2 on every kernel
  graph.epochs = 500              # at most; the epoch with the best validation accuracy is kept
  graph.patience = 100            # epochs without a better validation accuracy before stopping
  graph.learning_rate = 0.01      # Adam, every model
  graph.batch_size = 0            # MLP and GLNN rows per step; 0 = all in one batch (exact GLNN loss)
  graph.lam = 0.0                 # GLNN λ: λ·CE(labels) + (1−λ)·T²·KL(teacher‖student) on all nodes
  graph.temperature = 1.0         # GLNN T
  graph.representative_size = 500  # observed non-test nodes calibrating the int8 export
  return graph


def _multitask():
  multitask = ml_collections.ConfigDict()
  # Stages 'teacher_b' and 'multitask' (docs/distillation.md): a two-head student, head 'task_a'
  # taught by the teacher on the data's classes, head 'task_b' by a teacher of a second task whose
  # label is a function of the class: 'class:group' pairs, one per class, e.g. ('cat:mammal', ...).
  multitask.task_b_classes = ()
  multitask.teacher_b = ml_collections.ConfigDict()
  multitask.teacher_b.model = "resnet20"     # a name in tfkd.models.MODELS, trained on task B's labels
  multitask.teacher_b.kwargs = ml_collections.ConfigDict()  # extra keyword arguments of that builder
  multitask.teacher_b.epochs = 0             # 0 = train.epochs
  multitask.teacher_b.path = ""              # a trained task-B Keras classifier instead of training one
  multitask.student = ml_collections.ConfigDict()
  multitask.student.model = "resnet8"        # backbone of the two-head student (tfkd.models.MODELS)
  multitask.student.kwargs = ml_collections.ConfigDict()  # extra keyword arguments of that builder
  multitask.task_weights = (1.0, 1.0)        # λ of task A and task B; T and α are distill's
  multitask.micro_examples = 1000            # report: test images run on TFLite Micro; 0 = all
  return multitask


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0                 # weights, shuffling and augmentation; set again before every stage
  # Stages run in order; also: 'teacher_compress' (after 'teacher', with teacher.compress),
  # 'teacher_views' (after it, with distill.cached_teacher), 'prune', 'qat', 'prune_qat' (before 'report'),
  # 'selfsup_pretrain', 'selfsup' (the self-supervised route, before 'export'), and
  # 'teacher_b', 'multitask' (before 'export', with multitask.task_b_classes).
  config.stages = ("teacher", "scratch", "distill", "export", "report")
  # '' = one device; 'mirrored' = all local GPUs/CPUs; 'multiworker' = the TF_CONFIG cluster.
  config.distribute = ""
  config.data = _data()
  config.teacher = _model("resnet20", epochs=0)
  # Teachers (teacher/model.keras, distill.extra_teachers) may be HDF5 or SavedModel, formats that
  # can run code stored in them; Lambda layers' code is still never run (tfkd.model_files).
  config.teacher.allow_legacy_formats = False
  # Python modules imported before teacher files load: yours that register a teacher's custom
  # layers or model class (keras.saving.register_keras_serializable), e.g. ('my_project.layers',),
  # found from the working directory or PYTHONPATH. Their code runs: name only your own.
  config.teacher.import_modules = ()
  # 'tfkd': teacher.model trained here (or teacher.path); 'keras_hub': a pretrained BERT-family
  # model fine-tuned on the training text (teacher.hub), its logits cached once (docs/text.md).
  config.teacher.kind = "tfkd"
  config.teacher.hub = ml_collections.ConfigDict(dict(
      preset="",                  # local keras-hub/Hugging Face BERT folder; '' = shipped all-MiniLM-L6-v2
      sequence_length=64,         # wordpieces per text, [CLS] and [SEP] included; longer texts are cut
      epochs=1,                   # fine-tune epochs over the training split
      batch_size=32,              # rows per fine-tune step (batches of rows of similar length)
      learning_rate=5e-5,         # AdamW peak: linear warm-up, then cosine decay to 0
      warmup_fraction=0.06,       # share of the steps warming up
      weight_decay=0.01,          # AdamW's, not on biases and LayerNorm
      dropout=0.1,                # on the pooled sentence vector
      dtype="mixed_bfloat16",     # fine-tune: 'float32' or 'mixed_bfloat16' (bfloat16 compute, float32 weights)
      # The logits pass and the evaluation. bfloat16 inference ran 8x slower than float32 on an
      # AVX2 CPU without bfloat16 instructions (docs/text.md); use it where the hardware has them.
      inference_dtype="float32",
      checkpoint_steps=200,       # steps between the checkpoints a killed fine-tune resumes from
      inference_batch_size=256))  # rows per batch of the logits pass and the evaluation
  config.student = _model("resnet8")
  config.train = _train()              # the teacher, scratch and distill stages
  config.distill = _distill()
  config.selfsup = _selfsup()              # stages 'selfsup_pretrain' and 'selfsup'
  config.multitask = _multitask()       # stages 'teacher_b' and 'multitask'
  config.compress = _compress()
  config.search = _search()                # python -m tfkd.search only
  config.graph = _graph()                  # python -m tfkd.graph only

  config.export = ml_collections.ConfigDict()
  config.export.modes = ("float32", "int8")  # tflite.convert.MODES
  config.export.representative_size = 500    # training examples for int8 calibration
  # Fold the input Normalization into the first conv (tfkd.fold): raw-pixel .tflite, no SUB/MUL.
  config.export.fold_normalization = True
  config.export.fold_border = "mean"         # folded 'same' conv pads 'mean' (PADV2) or 'zeros' (-2.9 pt)

  config.report = ml_collections.ConfigDict()
  config.report.batch_size = 500             # examples per evaluation batch
  config.report.latency_runs = 200           # timed LiteRT invokes per model, over interleaved rounds
  config.report.warmup_runs = 20             # untimed invokes before timing
  config.report.threads = 1                  # LiteRT interpreter threads
  config.report.latency_spread_s = 60.0      # timing rounds span this; the quietest is reported (§19)
  config.report.edge = True                  # add the TFLite Micro / device section
  config.report.edge_mode = "int8"           # export mode of the distilled student in that section
  config.report.parity_samples = 100         # test inputs compared between TFLM and LiteRT
  config.report.stream_seconds = 0.0         # stream test images this long through student and teacher (0: off)
  config.report.stream_fps = 30.0            # target rate of that stream; 0: as fast as possible
  # Robust accuracy under PGD (CE on the labels, random start) of the Keras models and, the attack
  # crafted on each float model and transferred, their .tflite files: 'auto' (when
  # distill.adversarial.method is not 'none'), 'on' or 'off'. Images only.
  config.report.robust = "auto"
  config.report.pgd_epsilon = 8.0            # L∞ radius in raw pixels (0-255)
  config.report.pgd_step_size = 2.0          # pixels per step
  config.report.pgd_steps = 10               # steps
  config.report.robust_examples = 1000       # test images attacked, spread over the test set; 0 = all
  config.report.teacher_batch_runs = 10      # teacher.compress: timed batches (report.batch_size) per teacher
  return config
