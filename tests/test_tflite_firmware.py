"""The firmware C array compiles with gcc and holds exactly the model's bytes."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tf_keras

from tflite import convert, firmware
from tflite.errors import TfliteError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# Writes the array back out, so the test can compare it with the .tflite file.
DUMP_MAIN = r"""
#include <stdio.h>
#include "tiny_model_data.h"
int main(int argc, char** argv) {
  FILE* out = fopen(argv[1], "wb");
  fwrite(g_tiny_model, 1, g_tiny_model_len, out);
  fclose(out);
  return ((unsigned long)g_tiny_model % 16) != 0;  /* non-zero exit if not 16-byte aligned */
}
"""


@pytest.fixture(scope="module")
def model_bytes():
  inputs = tf_keras.Input((4, 4, 1))
  outputs = tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(inputs))
  calibration = np.random.default_rng(0).normal(size=(4, 4, 4, 1)).astype(np.float32)
  return convert.convert(tf_keras.Model(inputs, outputs), "int8", calibration)


def test_c_array_compiles_and_round_trips(model_bytes, tmp_path):
  source, header = firmware.write_c_files(model_bytes, str(tmp_path), "tiny")
  assert os.path.basename(source) == "tiny_model_data.cc" and header.endswith("tiny_model_data.h")
  text = open(source).read()
  assert "alignas(16) const unsigned char g_tiny_model[]" in text
  assert f"const unsigned int g_tiny_model_len = {len(model_bytes)};" in text
  # Compiles on its own, as C++ (what TFLM firmware is) and as C11.
  subprocess.run(["gcc", "-c", "-Wall", "-Werror", source, "-o", str(tmp_path / "model.o")],
                 check=True)
  subprocess.run(["gcc", "-c", "-x", "c", "-std=c11", "-Wall", "-Werror", source,
                  "-o", str(tmp_path / "model_c.o")], check=True)
  # Linked into a program, the array holds the .tflite bytes, aligned.
  main = tmp_path / "dump.cc"
  main.write_text(DUMP_MAIN)
  subprocess.run(["g++", "-I", str(tmp_path), str(main), str(tmp_path / "model.o"),
                  "-o", str(tmp_path / "dump")], check=True)
  subprocess.run([str(tmp_path / "dump"), str(tmp_path / "out.tflite")], check=True)
  assert (tmp_path / "out.tflite").read_bytes() == model_bytes


def test_header_declares_the_array_and_length(model_bytes):
  _, header = firmware.to_c_source(model_bytes, "kws")
  assert "extern const unsigned char g_kws_model[];" in header
  assert "extern const unsigned int g_kws_model_len;" in header
  assert "#ifndef KWS_MODEL_DATA_H_" in header


@pytest.mark.parametrize("name", ["1model", "my-model", ""])
def test_name_that_is_not_a_c_identifier_is_refused(model_bytes, name):
  with pytest.raises(firmware.FirmwareNameError, match="not a C identifier") as error:
    firmware.to_c_source(model_bytes, name)
  assert isinstance(error.value, TfliteError) and "argument name" in str(error.value)


def test_c_identifier_from_a_file_name():
  assert firmware.c_identifier("runs/x/distill_int8.tflite") == "distill_int8"
  assert firmware.c_identifier("8bit-model.tflite") == "m_8bit_model"
