#!/usr/bin/env python3
"""Builds a big pcap from small corpus captures for throughput benchmarks.

usage: repeat_pcap.py OUT MIN_MB PCAP [PCAP ...]

The input captures are appended one after another, over and over, until OUT holds at least
MIN_MB megabytes. Each copy is shifted in time to start 1 s after the previous one ended, so
connections never overlap and both wiretrail and tshark see a long, valid, time-ordered capture.
Later copies reuse the same ports (as a long-running client would) with TCP sequence numbers
moved by a per-copy offset: otherwise tshark takes every later copy for retransmissions of the
first and skips it. Classic pcap (microsecond or nanosecond), Ethernet (the corpus's loopback
captures) or other link types (copied unchanged); standard library only.
"""
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        sys.exit(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    recs = []
    at = 24
    while at + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[at:at + 16])
        ts = sec * 1_000_000 + (frac // 1000 if nano else frac)
        recs.append((ts, orig, data[at + 16:at + 16 + incl]))
        at += 16 + incl
    return data[:24], linktype, recs


def shift_seq(pkt, linktype, offset):
    """TCP seq/ack += offset for Ethernet/IPv4 and Ethernet/IPv6 packets (others unchanged)."""
    if linktype != 1 or offset == 0 or len(pkt) < 14:
        return pkt
    ethertype = struct.unpack(">H", pkt[12:14])[0]
    if ethertype == 0x0800 and len(pkt) >= 34 and pkt[23] == 6:
        tcp = 14 + (pkt[14] & 0x0F) * 4
    elif ethertype == 0x86DD and len(pkt) >= 54 and pkt[20] == 6:
        tcp = 54
    else:
        return pkt
    if len(pkt) < tcp + 12:
        return pkt
    seq, ack = struct.unpack(">II", pkt[tcp + 4:tcp + 12])
    out = bytearray(pkt)
    out[tcp + 4:tcp + 12] = struct.pack(">II", (seq + offset) & 0xFFFFFFFF, (ack + offset) & 0xFFFFFFFF)
    return bytes(out)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, min_bytes = sys.argv[1], int(float(sys.argv[2]) * 1_000_000)
    inputs = [read(p) for p in sys.argv[3:]]
    if len({lt for _, lt, _ in inputs}) != 1:
        sys.exit("all inputs must have the same link type")
    header = bytearray(inputs[0][0])
    header[0:4] = b"\xd4\xc3\xb2\xa1"  # write little-endian microseconds
    header[4:20] = struct.pack("<HHiII", 2, 4, 0, 0, 262144)
    header[20:24] = struct.pack("<I", inputs[0][1])
    written = 24
    clock = None
    copies = 0
    with open(out, "wb") as f:
        f.write(header)
        while written < min_bytes:
            for _, _, recs in inputs:
                if not recs:
                    continue
                first = recs[0][0]
                shift = 0 if clock is None else clock + 1_000_000 - first
                offset = (copies * 0x01000193) & 0xFFFFFFFF
                for ts, orig, pkt in recs:
                    pkt = shift_seq(pkt, inputs[0][1], offset)
                    t = ts + shift
                    f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(pkt), orig))
                    f.write(pkt)
                    written += 16 + len(pkt)
                clock = recs[-1][0] + shift
            copies += 1
    print(f"{out}: {written / 1e6:.1f} MB, {copies} copies of {len(inputs)} capture(s)")


if __name__ == "__main__":
    main()
