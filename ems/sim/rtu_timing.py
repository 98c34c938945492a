"""RTU wire time: a pty has no baud rate, so simulated RTU devices and the Modbus bench compute what the
frames of one exchange would take on a real line at a given baud rate and character format."""
from __future__ import annotations


def char_bits(parity: str = "N", stopbits: int = 1) -> int:
    """Bits per character on the line: start + 8 data + parity + stop (8N1 = 10, 8E1/8O1/8N2 = 11)."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def rtu_silence_s(baudrate: int, bits: int) -> float:
    """The inter-frame silence: 3.5 character times, fixed 1.75 ms above 19200 baud."""
    return 0.00175 if baudrate > 19200 else 3.5 * bits / baudrate


def rtu_adu_bytes(function: int, count: int) -> tuple[int, int]:
    """(request, response) RTU frame sizes in bytes for a read of `count` or a write of `count` values."""
    if function in (1, 2):
        return 8, 5 + (count + 7) // 8
    if function in (3, 4):
        return 8, 5 + 2 * count
    if function in (5, 6):
        return 8, 8
    if function == 15:
        return 9 + (count + 7) // 8, 8
    if function == 16:
        return 9 + 2 * count, 8
    raise ValueError(f"function {function} has no RTU frame size here (allowed: 1-6, 15, 16)")


def rtu_exchange_s(function: int, count: int, baudrate: int, bits: int = 10, response_bytes: int | None = None) -> float:
    """Wire time of one request/response: both frames plus the silence after each (no device turnaround)."""
    request, response = rtu_adu_bytes(function, count)
    if response_bytes is not None:
        response = response_bytes
    return (request + response) * bits / baudrate + 2 * rtu_silence_s(baudrate, bits)
