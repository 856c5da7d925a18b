"""Who may call the verifier: token authentication, TLS and mTLS, the remote-bind rule, the access log.

Real servers on port 0, real channels; certificates are made afresh for each run (a CA,
a server certificate for localhost/127.0.0.1, a client certificate, and a rogue CA's
client certificate that an mTLS server must refuse).
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import json
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from verifier_service import backends, cli, logs
from verifier_service.client import (
    AsyncVerifierClient, MathItem, RetryPolicy, VerifierCallError, VerifierClient,
)
from verifier_service.config import ServerConfig
from verifier_service.integrations import trl_reward
from verifier_service.interceptors import ACCESS_LOGGER
from verifier_service.logs import JsonFormatter
from verifier_service.proto import verifier_pb2 as pb
from verifier_service.proto import verifier_pb2_grpc as pb_grpc
from verifier_service.server import create_server

TOKEN = "tok-" + "a1" * 16
OTHER_TOKEN = "tok-" + "b2" * 16
WRONG_TOKEN = "tok-" + "c3" * 16
BASE = ServerConfig(address="127.0.0.1:0", math_workers=1, cache_size=0, replay_size=0, sandbox="off")
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


# ---------------------------------------------------------------------------- certificates

def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer: x509.Certificate | None, issuer_key, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """Paths: ca, server_cert/server_key, client_cert/client_key, rogue_cert/rogue_key."""
    directory = tmp_path_factory.mktemp("certs")
    ca_key, rogue_ca_key = _key(), _key()
    ca = _cert("verirl test CA", ca_key, None, ca_key, ca=True)
    rogue_ca = _cert("rogue CA", rogue_ca_key, None, rogue_ca_key, ca=True)
    paths = {"ca": _write(directory, "ca", ca, ca_key)[0]}
    for name, subject, issuer, issuer_key, server in [("server", "localhost", ca, ca_key, True),
                                                      ("client", "trainer-1", ca, ca_key, False),
                                                      ("rogue", "intruder", rogue_ca, rogue_ca_key, False)]:
        key = _key()
        paths[f"{name}_cert"], paths[f"{name}_key"] = _write(
            directory, name, _cert(subject, key, issuer, issuer_key, server=server), key)
    return paths


# ---------------------------------------------------------------------------- servers

@pytest.fixture
def access_lines():
    """Every access record of the test, formatted as the JSON log would print it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def token_server():
    server, port = create_server(BASE.replace(auth_tokens=(TOKEN, OTHER_TOKEN), access_log=True))
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture(scope="module")
def tls_server(certs):
    server, port = create_server(BASE.replace(tls_cert_file=str(certs["server_cert"]),
                                              tls_key_file=str(certs["server_key"]), auth_tokens=(TOKEN,)))
    yield f"localhost:{port}"
    server.stop(0)


@pytest.fixture(scope="module")
def mtls_server(certs):
    server, port = create_server(BASE.replace(tls_cert_file=str(certs["server_cert"]),
                                              tls_key_file=str(certs["server_key"]),
                                              tls_client_ca_file=str(certs["ca"]), access_log=True))
    yield f"127.0.0.1:{port}"
    server.stop(0)


def _check(channel: grpc.Channel, metadata=None, timeout: float = 10) -> pb.CheckMathResponse:
    request = pb.CheckMathRequest(items=[pb.MathItem(id="a", gold="2", response="\\boxed{2}")], request_id="rq-1")
    return pb_grpc.VerifierStub(channel).CheckMath(request, timeout=timeout, metadata=metadata)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# ---------------------------------------------------------------------------- token authentication

@pytest.mark.parametrize("metadata, details", [
    (None, "missing 'authorization: Bearer <token>' metadata"),
    (_bearer(WRONG_TOKEN), "the bearer token was not accepted"),
    (_bearer(TOKEN[:-1]), "the bearer token was not accepted"),
    ((("authorization", f"Basic {TOKEN}"),), "authorization metadata must be 'Bearer <token>'"),
    ((("authorization", "Bearer "),), "authorization metadata must be 'Bearer <token>'"),
    ((("x-api-key", TOKEN),), "missing 'authorization: Bearer <token>' metadata"),
])
def test_a_call_without_an_accepted_token_is_unauthenticated(token_server, metadata, details):
    with grpc.insecure_channel(token_server) as channel:
        with pytest.raises(grpc.RpcError) as error:
            _check(channel, metadata)
    assert error.value.code() is UNAUTHENTICATED and error.value.details() == details


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
def test_every_configured_token_is_accepted(token_server, token):
    with grpc.insecure_channel(token_server) as channel:
        assert _check(channel, _bearer(token)).results[0].status == pb.MathResult.CORRECT


def test_every_verifier_method_and_reflection_need_the_token_but_health_does_not(token_server):
    verify = pb.VerifyRequest(math=pb.MathItem(id="v", gold="1", response="1"))
    calls = {
        "GetServerInfo": lambda stub, md: stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5, metadata=md),
        "RunCode": lambda stub, md: stub.RunCode(pb.RunCodeRequest(), timeout=5, metadata=md),
        "ScoreSteps": lambda stub, md: stub.ScoreSteps(pb.ScoreStepsRequest(), timeout=5, metadata=md),
        "ScoreCandidates": lambda stub, md: stub.ScoreCandidates(pb.ScoreCandidatesRequest(), timeout=5, metadata=md),
        "Verify": lambda stub, md: list(stub.Verify(iter([verify]), timeout=5, metadata=md)),
    }
    list_services = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(token_server) as channel:
        stub = pb_grpc.VerifierStub(channel)
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as error:
                call(stub, None)
            assert error.value.code() is UNAUTHENTICATED, name
            call(stub, _bearer(TOKEN))
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            next(reflection.ServerReflectionInfo(iter([list_services]), timeout=5))
        assert error.value.code() is UNAUTHENTICATED
        answer = next(reflection.ServerReflectionInfo(iter([list_services]), timeout=5, metadata=_bearer(TOKEN)))
        assert "verifier.v1.Verifier" in {s.name for s in answer.list_services_response.service}
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        # An unknown method answers UNAUTHENTICATED too: without a token, nothing tells what exists.
        unknown = channel.unary_unary("/verifier.v1.Verifier/Nope")
        with pytest.raises(grpc.RpcError) as error:
            unknown(b"", timeout=5)
        assert error.value.code() is UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as error:
            unknown(b"", timeout=5, metadata=_bearer(TOKEN))
        assert error.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_clients_send_the_token(token_server, monkeypatch):
    monkeypatch.delenv("VERIRL_AUTH_TOKEN", raising=False)
    with VerifierClient(token_server, token=TOKEN) as client:
        assert client.check_math([MathItem("a", "\\boxed{3}", "3")])[0].correct
        assert {r.id for r in client.verify_stream([MathItem("s1", "1", "1"), MathItem("s2", "2", "1")])} == \
            {"s1", "s2"}
        assert client.server_info().limits.max_items_per_request == BASE.max_items_per_request
    with VerifierClient(token_server, token=WRONG_TOKEN) as client:
        with pytest.raises(VerifierCallError) as error:
            client.check_math([MathItem("a", "3", "3")])
    assert error.value.code == "UNAUTHENTICATED" and error.value.attempts == 1  # not retried: it cannot improve

    async def main():
        async with AsyncVerifierClient(token_server, token=OTHER_TOKEN) as client:
            results = await client.check_math([MathItem("a", "4", "4")])
            streamed = [r.id async for r in client.verify_stream([MathItem("b", "5", "5")])]
            return results, streamed

    results, streamed = asyncio.run(main())
    assert results[0].correct and streamed == ["b"]


def test_client_token_from_the_environment(token_server, monkeypatch):
    monkeypatch.setenv("VERIRL_AUTH_TOKEN", TOKEN)
    with VerifierClient(token_server) as client:
        assert client.check_math([MathItem("a", "6", "6")])[0].correct
    with VerifierClient(token_server, token="") as client:  # "" turns the environment's token off
        with pytest.raises(VerifierCallError, match="UNAUTHENTICATED"):
            client.check_math([MathItem("a", "6", "6")])


def test_adapter_factories_pass_access_through(token_server, tls_server, certs, monkeypatch):
    monkeypatch.delenv("VERIRL_AUTH_TOKEN", raising=False)
    reward = trl_reward(token_server, token=TOKEN)
    assert reward(["p"], ["\\boxed{7}"], answer=["7"]) == [1.0]
    reward.client.close()
    reward = trl_reward(tls_server, token=TOKEN, tls_ca=str(certs["ca"]))
    assert reward(["p"], ["\\boxed{7}"], answer=["8"]) == [0.0]
    reward.client.close()


# ---------------------------------------------------------------------------- TLS and mTLS

def test_tls_server_answers_a_tls_client_only(tls_server, certs):
    with VerifierClient(tls_server, token=TOKEN, tls_ca=certs["ca"].read_bytes()) as client:
        assert client.check_math([MathItem("a", "\\boxed{9}", "9")])[0].correct
    with grpc.insecure_channel(tls_server) as channel:  # plaintext to a TLS port: no handshake, no call
        with pytest.raises(grpc.RpcError) as error:
            _check(channel, _bearer(TOKEN), timeout=3)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    rogue_roots = grpc.ssl_channel_credentials(root_certificates=certs["rogue_cert"].read_bytes())
    with grpc.secure_channel(tls_server, rogue_roots) as channel:  # a server this client cannot verify
        with pytest.raises(grpc.RpcError) as error:
            _check(channel, _bearer(TOKEN), timeout=3)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE


def test_tls_still_needs_the_token(tls_server, certs):
    with VerifierClient(tls_server, token="", tls_ca=str(certs["ca"])) as client:
        with pytest.raises(VerifierCallError) as error:
            client.check_math([MathItem("a", "1", "1")])
    assert error.value.code == "UNAUTHENTICATED"


def test_mtls_requires_a_client_certificate_of_its_ca(mtls_server, certs, access_lines):
    ca = str(certs["ca"])
    with VerifierClient(mtls_server, tls_ca=ca, tls_cert=str(certs["client_cert"]),
                        tls_key=str(certs["client_key"]), tls_server_name="localhost") as client:
        assert client.check_math([MathItem("a", "\\boxed{1}", "1")])[0].correct
    [line] = [line for line in access_lines() if line["rpc"] == "CheckMath"]
    assert line["peer_identity"] == "trainer-1" and line["code"] == "OK"
    for cert, key in [(None, None), (certs["rogue_cert"], certs["rogue_key"])]:
        with VerifierClient(mtls_server, tls_ca=ca, tls_cert=cert and str(cert), tls_key=key and str(key),
                            tls_server_name="localhost", timeout=3, retry=RetryPolicy(max_attempts=1)) as client:
            with pytest.raises(VerifierCallError) as error:
                client.check_math([MathItem("a", "1", "1")])
        assert error.value.code == "UNAVAILABLE"  # refused in the handshake, before any call


def test_client_tls_arguments_are_checked(certs):
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        VerifierClient("127.0.0.1:1", tls_cert=str(certs["client_cert"]))
    with pytest.raises(ValueError, match="printable ASCII"):
        VerifierClient("127.0.0.1:1", token="two words")


# ---------------------------------------------------------------------------- the remote-bind rule

def test_non_loopback_needs_authentication_or_an_explicit_opt_out(certs):
    with pytest.raises(ValueError, match="refusing to bind 0.0.0.0:0: a non-loopback address needs authentication"):
        ServerConfig(address="0.0.0.0:0")
    with pytest.raises(ValueError, match="refusing to bind"):  # TLS alone says who the server is, not the caller
        ServerConfig(address="0.0.0.0:0", tls_cert_file=str(certs["server_cert"]),
                     tls_key_file=str(certs["server_key"]))
    assert ServerConfig(address="0.0.0.0:0", allow_insecure_remote=True).allow_insecure_remote
    assert ServerConfig(address="0.0.0.0:0", auth_tokens=[TOKEN]).auth_tokens == (TOKEN,)
    assert ServerConfig(address="0.0.0.0:0", tls_cert_file="c", tls_key_file="k", tls_client_ca_file="ca").authenticated


@pytest.mark.parametrize("changes, message", [
    ({"auth_tokens": ("short",)}, r"auth_tokens\[0\] must be at least 16"),
    ({"auth_tokens": (TOKEN, "has space " + TOKEN)}, r"auth_tokens\[1\]"),
    ({"tls_cert_file": "c"}, "tls_cert_file and tls_key_file go together"),
    ({"tls_client_ca_file": "ca"}, "needs tls_cert_file"),
])
def test_access_settings_are_checked_without_quoting_tokens(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        BASE.replace(**changes)
    assert TOKEN not in str(error.value) and "short" not in str(error.value)


def test_cli_refuses_a_remote_bind_without_authentication(capsys, monkeypatch):
    monkeypatch.delenv("VERIRL_AUTH_TOKEN", raising=False)
    monkeypatch.setattr(logs, "configure_logging", lambda fmt, level: None)  # leave pytest's logging alone
    assert cli.main(["serve", "--address", "0.0.0.0:0", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing to bind 0.0.0.0:0" in err and "allow_insecure_remote" in err


# ---------------------------------------------------------------------------- access log

def test_access_log_has_one_structured_line_per_rpc(token_server, access_lines):
    with grpc.insecure_channel(token_server) as channel:
        stub = pb_grpc.VerifierStub(channel)
        items = [pb.MathItem(id=str(n), gold="2", response=r) for n, r in enumerate(["2", "3", "no answer here"])]
        stub.CheckMath(pb.CheckMathRequest(items=items, request_id="batch-77"), timeout=10, metadata=_bearer(TOKEN))
        stream = [pb.VerifyRequest(math=pb.MathItem(id=f"v{n}", gold="1", response="1")) for n in range(2)]
        list(stub.Verify(iter(stream), timeout=10, metadata=(*_bearer(TOKEN), ("x-request-id", "stream-5"))))
        with pytest.raises(grpc.RpcError):
            stub.CheckMath(pb.CheckMathRequest(items=[pb.MathItem(id="x", gold="")]), timeout=10,
                           metadata=_bearer(TOKEN))
        with pytest.raises(grpc.RpcError):
            stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10, metadata=_bearer(WRONG_TOKEN))
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)  # not logged
    lines = access_lines()
    assert [(line["rpc"], line["code"]) for line in lines] == [
        ("CheckMath", "OK"), ("Verify", "OK"), ("CheckMath", "INVALID_ARGUMENT"), ("GetServerInfo", "UNAUTHENTICATED")]
    check, verify, invalid, refused = lines
    assert check["request_id"] == "batch-77" and check["items"] == 3
    assert check["statuses"] == {"CORRECT": 1, "INCORRECT": 1, "NO_ANSWER": 1}
    assert check["peer"].startswith("ipv4:127.0.0.1:") and check["duration_ms"] > 0
    assert check["logger"] == ACCESS_LOGGER and check["level"] == "INFO"
    assert verify["request_id"] == "stream-5" and verify["items"] == 2 and verify["statuses"] == {"CORRECT": 2}
    assert invalid["items"] == 1 and invalid["statuses"] == {}
    assert re.fullmatch(r"srv-[0-9a-f]{16}", refused["request_id"])  # the server names a call that has no id


def test_no_token_is_ever_logged(token_server, certs, caplog):
    caplog.set_level(logging.DEBUG)
    config = BASE.replace(auth_tokens=(TOKEN,), tls_cert_file=str(certs["server_cert"]),
                          tls_key_file=str(certs["server_key"]))
    logging.getLogger("test").info("config %r", config)
    with grpc.insecure_channel(token_server) as channel:
        stub = pb_grpc.VerifierStub(channel)
        for token in (TOKEN, WRONG_TOKEN):
            for metadata in (_bearer(token), (("authorization", f"Basic {token}"),), (("authorization", token),)):
                try:
                    _check(channel, metadata)
                except grpc.RpcError as exc:
                    assert token not in (exc.details() or "")
        list(stub.Verify(iter([pb.VerifyRequest(math=pb.MathItem(id="x", gold="1", response="1"))]), timeout=10,
                         metadata=_bearer(TOKEN)))
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert "rpc CheckMath" in text  # the access log did run
    for token in (TOKEN, WRONG_TOKEN):
        assert token not in text and token[:20] not in text


@pytest.mark.slow
def test_cli_serve_with_token_file_tls_and_json_logs(certs, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# trainers\n{TOKEN}\n\n{OTHER_TOKEN}\n")
    argv = [sys.executable, "-m", "verifier_service.cli", "serve", "--address", "0.0.0.0:0", "--workers", "1",
            "--auth-token-file", str(tokens), "--tls-cert", str(certs["server_cert"]), "--tls-key",
            str(certs["server_key"]), "--log-format", "json", "--sandbox", "off"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={"PATH": "/usr/bin:/bin", "VERIRL_AUTH_TOKEN": WRONG_TOKEN + "x"})
    try:
        line = process.stdout.readline()
        assert "tls, token auth (3 token(s))" in line
        port = int(re.search(r"listening on \S+:(\d+)", line).group(1))
        with VerifierClient(f"localhost:{port}", token=OTHER_TOKEN, tls_ca=str(certs["ca"])) as client:
            assert client.check_math([MathItem("a", "\\boxed{5}", "5")])[0].correct
        with VerifierClient(f"localhost:{port}", token=WRONG_TOKEN, tls_ca=str(certs["ca"])) as client:
            with pytest.raises(VerifierCallError, match="UNAUTHENTICATED"):
                client.check_math([MathItem("a", "5", "5")])
        process.terminate()
        assert process.wait(timeout=15) == 0
        records = [json.loads(line) for line in process.stderr.read().splitlines()]
    finally:
        process.kill()
        process.wait()
    assert [(r["rpc"], r["code"]) for r in records if r["logger"] == ACCESS_LOGGER] == [
        ("GetServerInfo", "OK"), ("CheckMath", "OK"), ("GetServerInfo", "UNAUTHENTICATED")]  # (the client's size probe)
    text = json.dumps(records)
    assert not any(token in text for token in (TOKEN, OTHER_TOKEN, WRONG_TOKEN))
    assert all(token not in " ".join(argv) for token in (TOKEN, OTHER_TOKEN))  # nothing secret for `ps` to show


def test_a_bad_certificate_is_a_clear_error(certs, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(OSError, match="or TLS refused .*bad.pem"):
        create_server(BASE.replace(tls_cert_file=str(bad), tls_key_file=str(certs["server_key"])))
    with pytest.raises(FileNotFoundError):
        create_server(BASE.replace(tls_cert_file=str(tmp_path / "missing.pem"), tls_key_file=str(bad)))


def test_a_stream_the_caller_left_is_logged_cancelled(token_server, access_lines, monkeypatch, slow_fn):
    """The caller leaves (its deadline passes) while the server still owes it a result, so the
    server cannot end the stream as OK first: with nothing outstanding, the end of the request
    side and the cancel race, and either may reach the server first."""
    monkeypatch.setattr(backends, "MATH_CHECK_FN", slow_fn("math_check"))  # "sleep:S" responses sleep
    release = threading.Event()

    def requests():
        yield pb.VerifyRequest(math=pb.MathItem(id="first", gold="1", response="1"))
        yield pb.VerifyRequest(math=pb.MathItem(id="slow", gold="1", response="sleep:1.5"))
        release.wait(10)  # keeps the request side open past the deadline

    with grpc.insecure_channel(token_server) as channel:
        call = pb_grpc.VerifierStub(channel).Verify(requests(), timeout=1.0, metadata=_bearer(TOKEN))
        assert next(call).math.id == "first"
        with pytest.raises(grpc.RpcError) as caught:
            next(call)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 5
        while not access_lines() and time.monotonic() < deadline:
            time.sleep(0.02)
        release.set()
    [line] = access_lines()
    assert (line["rpc"], line["code"], line["statuses"]) == ("Verify", "CANCELLED", {"CORRECT": 1})


def test_client_warns_of_a_token_in_clear_text(caplog, monkeypatch):
    monkeypatch.delenv("VERIRL_TLS_CA", raising=False)
    with VerifierClient(["127.0.0.1:1", "10.1.2.3:50051"], token=TOKEN):
        pass
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "sending a bearer token to 10.1.2.3:50051 without TLS: it crosses the network in clear text"]
