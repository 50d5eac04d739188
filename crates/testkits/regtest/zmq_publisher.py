"""Publishes bitcoind-style ZMQ hashblock notifications with libzmq (via pyzmq).

Usage: zmq_publisher.py ENDPOINT
Each line read on stdin is a block hash in display hex; it is published as bitcoind does:
topic "hashblock", the 32-byte hash in display byte order, a 4-byte little-endian sequence.
"""
import struct
import sys

import zmq

ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.bind(sys.argv[1])
print("ready", flush=True)
seq = 0
for line in sys.stdin:
    h = line.strip()
    if not h:
        continue
    pub.send_multipart([b"hashblock", bytes.fromhex(h), struct.pack("<I", seq)])
    seq += 1
    print("sent", seq, flush=True)
