"""Device profiles: flash against model bytes, RAM against the arena."""

import pytest

from tflite import devices

KIB = 1024
NRF52840 = next(d for d in devices.DEVICES if "nRF52840" in d.name)


def test_profiles_carry_the_boards_figures():
  assert (NRF52840.ram_bytes, NRF52840.flash_bytes) == (256 * KIB, 1024 * KIB)
  m7 = [d for d in devices.DEVICES if d.core == "Arm Cortex-M7"]
  assert {(d.ram_bytes, d.flash_bytes) for d in m7} == {(320 * KIB, 1024 * KIB), (512 * KIB, 2048 * KIB)}
  assert any("ESP32-S3" in d.name and d.ram_bytes == 512 * KIB for d in devices.DEVICES)
  assert any(d.runtime == "LiteRT" for d in devices.DEVICES)  # the Raspberry Pi-class board


@pytest.mark.parametrize("model_kib, arena_kib, flash, ram, verdict", [
    (100, 60, "yes", "yes", "yes"),
    (900, 60, "tight", "yes", "tight"),      # 88% of 1 MB flash
    (1100, 60, "no", "yes", "no"),           # more than the flash
    (100, 250, "yes", "tight", "tight"),     # 98% of 256 KB RAM
    (100, 300, "yes", "no", "no"),           # arena larger than RAM
])
def test_fit_verdicts(model_kib, arena_kib, flash, ram, verdict):
  result = devices.fits(NRF52840, model_kib * KIB, arena_kib * KIB)
  assert (result["flash"], result["ram"], result["fits"]) == (flash, ram, verdict)
  assert result["flash_used"] == pytest.approx(model_kib / 1024)


def test_unknown_arena_leaves_ram_unjudged():
  result = devices.fits(NRF52840, 100 * KIB, None)
  assert result["ram"] == "unknown" and result["fits"] == "unknown" and result["ram_used"] is None


def test_table_and_markdown_cover_every_device():
  rows = devices.fit_table(92_928, 56_096)
  assert [r["device"] for r in rows] == [d.name for d in devices.DEVICES]
  text = devices.markdown(rows)
  assert all(f"| {d.name} |" in text for d in devices.DEVICES)
  assert "| 256 KB | 1 MB | 21.4% | 8.86% | yes |" in text
