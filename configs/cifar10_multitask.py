"""CIFAR-10 multi-task distillation: one two-head ResNet-8, head A taught the 10 classes by the
ResNet-20 teacher, head B taught a 4-way grouping of them by a ResNet-20 task-B teacher.

  python -m tfkd.train --config=configs/cifar10_multitask.py --workdir=runs/cifar10_multitask

Task B groups the classes into vehicles on land, other vehicles, mammals and other
animals: four unequal groups (2, 2, 4 and 2 classes) whose borders cut across the
confusions a CIFAR-10 model makes (bird/airplane, deer/horse vs frog/bird, ship/truck),
so it is neither the 10-way task again nor the near-trivial vehicle/animal split.
The export stage writes export/multitask_int8.tflite, one file with outputs 'task_a' and
'task_b'; the report's "Multi-task student" section measures both on LiteRT and TFLite
Micro (docs/distillation.md). Add 'teacher_b' after 'teacher' to train the task-B
teacher here, or set multitask.teacher_b.path.
"""

from configs import cifar10_resnet

COARSE_GROUPS = {
    "vehicle_land": ("automobile", "truck"),
    "vehicle_other": ("airplane", "ship"),
    "mammal": ("cat", "deer", "dog", "horse"),
    "other_animal": ("bird", "frog"),
}


def get_config():
  config = cifar10_resnet.get_config()
  config.stages = ("teacher", "teacher_b", "multitask", "export", "report")
  config.multitask.task_b_classes = tuple(
      f"{name}:{group}" for group, names in COARSE_GROUPS.items() for name in names)
  config.multitask.teacher_b.model = "resnet20"
  config.multitask.teacher_b.epochs = 80
  config.multitask.student.model = "resnet8"
  return config
