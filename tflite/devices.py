"""Target devices and whether a model fits them: flash against model bytes, RAM against arena.

The profiles are real boards with their datasheet figures. "RAM" is the
on-chip SRAM (or the board's DRAM for Linux boards); "flash" is the on-chip or
on-board flash (storage for Linux boards). The verdict compares the model
alone with the whole memory; the firmware, TFLM's code, the stack and the
application need room too, so a model that uses more than `TIGHT_FRACTION` of
either memory is marked "tight" rather than "yes".

Example:
  for row in fit_table(model_bytes=92_928, arena_bytes=56_096):
    print(row["device"], row["fits"])
"""

import dataclasses
from typing import Optional

KIB = 1024
MIB = 1024 * KIB

# Above this share of flash or RAM a model is "tight": little is left for the rest of the firmware.
TIGHT_FRACTION = 0.75


@dataclasses.dataclass(frozen=True)
class Device:
  """One deployment target.

  Attributes:
    name: short name used in tables.
    board: the board and chip the figures come from.
    core: CPU core.
    clock_mhz: core clock.
    ram_bytes: memory available for the tensor arena and everything else.
    flash_bytes: memory that holds the model (and the firmware).
    runtime: the interpreter that runs there ('TFLite Micro' or 'LiteRT').
  """
  name: str
  board: str
  core: str
  clock_mhz: int
  ram_bytes: int
  flash_bytes: int
  runtime: str = "TFLite Micro"


DEVICES = (
    Device("Cortex-M4 (nRF52840)", "Nordic nRF52840 (e.g. Arduino Nano 33 BLE Sense)",
           "Arm Cortex-M4F", 64, 256 * KIB, 1 * MIB),
    Device("Cortex-M7 (STM32F746)", "ST 32F746GDISCOVERY, STM32F746NG",
           "Arm Cortex-M7", 216, 320 * KIB, 1 * MIB),
    Device("Cortex-M7 (STM32F767)", "ST NUCLEO-F767ZI, STM32F767ZI",
           "Arm Cortex-M7", 216, 512 * KIB, 2 * MIB),
    Device("ESP32-S3", "Espressif ESP32-S3-DevKitC-1-N8 (ESP32-S3-WROOM-1 module)",
           "Xtensa LX7 dual-core", 240, 512 * KIB, 8 * MIB),
    Device("Raspberry Pi Zero 2 W", "Raspberry Pi Zero 2 W (RP3A0), 8 GB microSD assumed",
           "Arm Cortex-A53 quad-core", 1000, 512 * MIB, 8 * 1024 * MIB, runtime="LiteRT"),
)


def _verdict(used: int, capacity: int) -> str:
  if used > capacity:
    return "no"
  return "tight" if used > TIGHT_FRACTION * capacity else "yes"


def fits(device: Device, model_bytes: int, arena_bytes: Optional[int]) -> dict:
  """Whether a model fits one device.

  Args:
    device: a `Device`.
    model_bytes: the `.tflite` size (what goes to flash).
    arena_bytes: the TFLM tensor arena (what goes to RAM), or None if unknown
      (then RAM is not judged).

  Returns:
    {"device", "flash_used" and "ram_used" (fractions), "flash", "ram" and
    "fits" (each 'yes', 'tight', 'no' or 'unknown')}.
  """
  flash = _verdict(model_bytes, device.flash_bytes)
  ram = "unknown" if arena_bytes is None else _verdict(arena_bytes, device.ram_bytes)
  order = ("no", "unknown", "tight", "yes")
  return {"device": device.name, "board": device.board, "runtime": device.runtime,
          "flash_bytes": device.flash_bytes, "ram_bytes": device.ram_bytes,
          "flash_used": model_bytes / device.flash_bytes,
          "ram_used": None if arena_bytes is None else arena_bytes / device.ram_bytes,
          "flash": flash, "ram": ram, "fits": min(flash, ram, key=order.index)}


def fit_table(model_bytes: int, arena_bytes: Optional[int], devices=DEVICES) -> list:
  """`fits` for every device, in the order of `devices`."""
  return [fits(d, model_bytes, arena_bytes) for d in devices]


def markdown(rows) -> str:
  """The fit table as markdown."""
  lines = ["| device | RAM | flash | arena / RAM | model / flash | fits |",
           "|---|---:|---:|---:|---:|---|"]
  for r in rows:
    ram_used = "—" if r["ram_used"] is None else f"{r['ram_used'] * 100:.1f}%"
    lines.append(f"| {r['device']} | {_human(r['ram_bytes'])} | {_human(r['flash_bytes'])} | "
                 f"{ram_used} | {r['flash_used'] * 100:.2f}% | {r['fits']} |")
  return "\n".join(lines)


def _human(n: int) -> str:
  if n >= 1024 * MIB:
    return f"{n / (1024 * MIB):g} GB"
  if n >= MIB:
    return f"{n / MIB:g} MB"
  return f"{n / KIB:g} KB"
