"""Generated stubs of protos/verifier/v1/verifier.proto (scripts/gen_protos.py writes them)."""
