"""verirl verifier service: math, code and step checks behind one gRPC contract."""

__version__ = "0.1.0"
