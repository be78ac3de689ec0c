"""Python grpcio against the guarded gRPC example (examples/grpc_guarded.rs):
stubs generated at test time from the example's guarded.proto with
grpcio-tools, every refusal checked by its status code, a server-streaming
call accepted and refused."""

import os
import re
import subprocess
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

from harness import ROOT, TARGET, Results, free_port, stop

EXAMPLE = os.path.join(TARGET, "debug", "examples", "grpc_guarded")
PROTO_DIR = os.path.join(ROOT, "examples", "grpc_guarded")


def generate_stubs(out):
    args = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", "guarded.proto"]
    if protoc.main(args) != 0:
        raise RuntimeError("grpcio-tools could not compile guarded.proto")
    sys.path.insert(0, out)


class GuardedServer:
    """The example on a free loopback port, and the two tokens it prints."""

    def __enter__(self):
        self.port = free_port()
        self.process = subprocess.Popen(
            [EXAMPLE], env=dict(os.environ, ADDR=f"127.0.0.1:{self.port}"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.accepted = self.lacking_role = None
        deadline = time.time() + 30
        while time.time() < deadline and not (self.accepted and self.lacking_role):
            line = self.process.stdout.readline()
            if not line:
                break
            if m := re.match(r"accepted token \([^)]*\): (\S+)", line):
                self.accepted = m.group(1)
            elif m := re.match(r"token lacking the role auditor \([^)]*\): (\S+)", line):
                self.lacking_role = m.group(1)
        if not (self.accepted and self.lacking_role):
            self.__exit__(None, None, None)
            raise RuntimeError("the example did not print its tokens")
        return self

    def __exit__(self, *exc):
        stop(self.process)
        self.process.stdout.close()
        return False


def tampered(token):
    """The token with one character of its signature changed."""
    head, payload, signature = token.split(".")
    i = len(signature) // 2
    swapped = "A" if signature[i] != "A" else "B"
    return ".".join([head, payload, signature[:i] + swapped + signature[i + 1:]])


def main():
    results = Results("grpc_client")
    with tempfile.TemporaryDirectory() as out, GuardedServer() as server:
        generate_stubs(out)
        import guarded_pb2
        import guarded_pb2_grpc

        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = guarded_pb2_grpc.GuardedStub(channel)

        def who_am_i(metadata):
            return stub.WhoAmI(guarded_pb2.WhoAmIRequest(), metadata=metadata, timeout=10)

        def refused(call, code, message, what):
            try:
                call()
            except grpc.RpcError as err:
                results.check(err.code() == code, f"{what}: {err.code()} is {code}")
                results.check(message in err.details(), f"{what}: {err.details()!r} names {message!r}")
                return err
            results.check(False, f"{what}: the call is refused")
            return None

        bearer = lambda token: ("authorization", f"Bearer {token}")

        # Accepted: the method reads the verified claims and the space.
        identity = who_am_i([bearer(server.accepted)])
        results.check(identity.subject == "ann", f"subject {identity.subject!r}")
        results.check(identity.space == "default_space", f"default space {identity.space!r}")
        results.check(list(identity.roles) == ["auditor"], f"roles {list(identity.roles)!r}")
        identity = who_am_i([bearer(server.accepted), ("x-space", "plant-a")])
        results.check(identity.space == "plant-a", f"selected space {identity.space!r}")

        # The custom metadata key.
        identity = who_am_i([("x-api-token", server.accepted)])
        results.check(identity.subject == "ann", "the token from x-api-token")

        # No token, a bad token: UNAUTHENTICATED, with the challenge as metadata.
        err = refused(lambda: who_am_i([]), grpc.StatusCode.UNAUTHENTICATED,
                      "authentication is required", "no token")
        if err is not None:
            trailing = dict(err.trailing_metadata() or ())
            initial = dict(err.initial_metadata() or ())
            challenge = trailing.get("www-authenticate") or initial.get("www-authenticate")
            results.check(challenge == 'Bearer realm="api"', f"challenge {challenge!r}")
        refused(lambda: who_am_i([bearer(tampered(server.accepted))]), grpc.StatusCode.UNAUTHENTICATED,
                "", "a tampered token")
        refused(lambda: who_am_i([("x-api-token", "not-a-token")]), grpc.StatusCode.UNAUTHENTICATED,
                "", "junk in x-api-token")

        # A space the token does not grant, a malformed one.
        refused(lambda: who_am_i([bearer(server.lacking_role), ("x-space", "plant-a")]),
                grpc.StatusCode.PERMISSION_DENIED, "does not grant this space", "space not granted")
        refused(lambda: who_am_i([bearer(server.accepted), ("x-space", "../etc")]),
                grpc.StatusCode.INVALID_ARGUMENT, "malformed", "malformed space")

        # Server streaming: accepted with the role, refused without it or a token.
        def audit(metadata, count=4):
            return list(stub.Audit(guarded_pb2.AuditRequest(count=count), metadata=metadata, timeout=10))

        events = audit([bearer(server.accepted), ("x-space", "plant-a")])
        results.check([e.sequence for e in events] == [1, 2, 3, 4], f"events {[e.sequence for e in events]}")
        results.check(all(e.subject == "ann" and e.space == "plant-a" for e in events), "events' subject and space")
        refused(lambda: audit([bearer(server.lacking_role)]), grpc.StatusCode.PERMISSION_DENIED,
                "auditor", "stream without the role")
        refused(lambda: audit([]), grpc.StatusCode.UNAUTHENTICATED, "authentication is required",
                "stream without a token")
        channel.close()
    return results.finish()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
