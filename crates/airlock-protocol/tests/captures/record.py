#!/usr/bin/env python3
"""Record real OpenSSH agent traffic, one frame per file, for airlock-protocol's round-trip tests.

A unix-socket proxy sits between the clients (ssh-add, ssh, ssh-keygen -Y sign) and OpenSSH's own
`ssh-agent -D -a SOCK`. Every complete frame, 4-byte length included, is written to
`NNN-<req|resp>-<type>-<label>.bin` in the output directory, and README.md lists the files.
All keys are throwaway keys made by ssh-keygen in a temp dir for this run.

    python3 record.py [OUTDIR]        # default: the directory of this script

Needs openssh-client and openssh-server (for the `ssh` captures: session-bind, RSA signing with
the rsa-sha2-256/512 flags, a forwarded agent connection). Run as root (sshd logs in root with
the key) on a machine where /usr/sbin/sshd exists. Stdlib only.
"""

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REQUEST_TYPES = {
    1: "rsa-request-identities",
    9: "remove-all-rsa-identities",
    11: "request-identities",
    13: "sign-request",
    17: "add-identity",
    18: "remove-identity",
    19: "remove-all-identities",
    20: "add-smartcard-key",
    21: "remove-smartcard-key",
    22: "lock",
    23: "unlock",
    25: "add-id-constrained",
    26: "add-smartcard-key-constrained",
    27: "extension",
}
RESPONSE_TYPES = {
    5: "failure",
    6: "success",
    12: "identities-answer",
    14: "sign-response",
    28: "extension-failure",
    29: "extension-response",
}
SIGN_FLAGS = {0: "no flags", 2: "SSH_AGENT_RSA_SHA2_256", 4: "SSH_AGENT_RSA_SHA2_512"}


def read_string(body, offset):
    n = int.from_bytes(body[offset : offset + 4], "big")
    return body[offset + 4 : offset + 4 + n], offset + 4 + n


def describe(direction, frame):
    """One line saying what a frame is, from its bytes."""
    kind = frame[4]
    body = frame[5:]
    names = REQUEST_TYPES if direction == "req" else RESPONSE_TYPES
    name = names.get(kind, f"type-{kind}")
    text = f"{name} ({kind})"
    try:
        if kind in (17, 25):
            key_type, _ = read_string(body, 0)
            text += f", key type {key_type.decode()}"
        elif kind == 13:
            blob, off = read_string(body, 0)
            key_type, _ = read_string(blob, 0)
            data, off = read_string(body, off)
            flags = int.from_bytes(body[off : off + 4], "big")
            what = "SSHSIG blob" if data.startswith(b"SSHSIG") else "userauth request"
            text += f", {key_type.decode()} key, {len(data)}-byte {what}, flags {flags} ({SIGN_FLAGS.get(flags, '?')})"
        elif kind == 14:
            sig, _ = read_string(body, 0)
            alg, _ = read_string(sig, 0)
            text += f", {alg.decode()} signature"
        elif kind == 12:
            count = int.from_bytes(body[0:4], "big")
            off, types = 4, []
            for _ in range(count):
                blob, off = read_string(body, off)
                _, off = read_string(body, off)
                types.append(read_string(blob, 0)[0].decode())
            text += f", {count} keys" + (f": {', '.join(types)}" if types else "")
        elif kind == 27:
            ext, off = read_string(body, 0)
            text += f" {ext.decode()}"
            if ext == b"session-bind@openssh.com":
                for _ in range(3):
                    _, off = read_string(body, off)
                text += f", is_forwarding={body[off]}"
        elif kind == 18:
            blob, _ = read_string(body, 0)
            text += f", {read_string(blob, 0)[0].decode()} key"
    except (IndexError, UnicodeDecodeError):
        text += " (could not summarise)"
    return text


class Recorder:
    """The proxy. `step(label, keep)` names the frames of the next client run."""

    def __init__(self, upstream, listen, outdir):
        self.upstream = upstream
        self.listen = listen
        self.outdir = outdir
        self.lock = threading.Lock()
        self.counter = 0
        self.label = "unlabelled"
        self.keep = None
        self.index = []  # (file name, description)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(listen)
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @contextlib.contextmanager
    def step(self, label, description, keep=None):
        with self.lock:
            self.label, self.description, self.keep = label, description, keep
        yield
        # Frames are recorded before they are forwarded, so everything the client saw is on disk.
        with self.lock:
            self.label, self.keep = "unlabelled", None

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, "req"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "resp"), daemon=True).start()

    def _pump(self, source, sink, direction):
        buffer = b""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            buffer += data
            while len(buffer) >= 4:
                length = int.from_bytes(buffer[:4], "big")
                if len(buffer) < 4 + length:
                    break
                self._record(direction, buffer[: 4 + length])
                buffer = buffer[4 + length :]
            with contextlib.suppress(OSError):
                sink.sendall(data)

    def _record(self, direction, frame):
        with self.lock:
            names = REQUEST_TYPES if direction == "req" else RESPONSE_TYPES
            kind = names.get(frame[4], f"type-{frame[4]}")
            if self.keep is not None and frame[4] not in self.keep:
                return
            self.counter += 1
            name = f"{self.counter:03d}-{direction}-{kind}-{self.label}.bin"
            (self.outdir / name).write_bytes(frame)
            self.index.append((name, f"{self.description}: {describe(direction, frame)}"))


def run(args, env, check=True, **kwargs):
    result = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def keygen(directory, name, *type_args):
    path = directory / name
    run(["ssh-keygen", "-q", *type_args, "-N", "", "-C", f"airlock-capture-{name}", "-f", path], os.environ)
    return path


def wait_for(predicate, what, seconds=20):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.005)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(work, authorized_key):
    """A throwaway sshd like airlock-test-support's Sshd; returns (process, port, host key line)."""
    if not os.path.exists("/usr/sbin/sshd"):
        sys.exit("/usr/sbin/sshd is missing: apt-get install -y openssh-server")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    host_key = keygen(work, "sshd-host-ed25519", "-t", "ed25519")
    (work / "authorized_keys").write_text(authorized_key)
    port = free_port()
    log = work / "sshd.log"
    (work / "sshd_config").write_text(
        f"""ListenAddress 127.0.0.1:{port}
HostKey {host_key}
AuthorizedKeysFile {work}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel DEBUG3
UseDNS no
PrintMotd no
PrintLastLog no
PermitUserEnvironment no
PermitUserRC no
AllowAgentForwarding yes
"""
    )
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", work / "sshd_config", "-E", log],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    ready = f"Server listening on 127.0.0.1 port {port}."
    wait_for(lambda: log.exists() and ready in log.read_text(errors="replace") or process.poll() is not None, "sshd")
    if process.poll() is not None:
        sys.exit(f"sshd exited:\n{log.read_text(errors='replace')}")
    public = " ".join(pathlib.Path(f"{host_key}.pub").read_text().split()[:2])
    return process, port, public, log


def main():
    outdir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent).resolve()
    for old in outdir.glob("*.bin"):
        old.unlink()
    work = pathlib.Path(tempfile.mkdtemp(prefix="airlock-capture-"))
    agent = proxy = sshd = None
    try:
        keys = work / "keys"
        keys.mkdir(mode=0o700)
        ed25519 = keygen(keys, "ed25519", "-t", "ed25519")
        p256 = keygen(keys, "ecdsa-p256", "-t", "ecdsa", "-b", "256")
        p384 = keygen(keys, "ecdsa-p384", "-t", "ecdsa", "-b", "384")
        p521 = keygen(keys, "ecdsa-p521", "-t", "ecdsa", "-b", "521")
        rsa = keygen(keys, "rsa-3072", "-t", "rsa", "-b", "3072")
        lifetime = keygen(keys, "ed25519-lifetime", "-t", "ed25519")
        confirm = keygen(keys, "ed25519-confirm", "-t", "ed25519")
        destination = keygen(keys, "ed25519-destination", "-t", "ed25519")
        ca = keygen(work, "user-ca", "-t", "ed25519")
        certified = keygen(keys, "ed25519-certified", "-t", "ed25519")
        run(["ssh-keygen", "-q", "-s", ca, "-I", "airlock-capture", "-n", "root", "-V", "20260101:20360101",
             f"{certified}.pub"], os.environ)

        sshd, port, host_key, sshd_log = start_sshd(work, pathlib.Path(f"{rsa}.pub").read_text())
        other_host_key = " ".join(pathlib.Path(f"{keygen(work, 'node-b-host', '-t', 'ed25519')}.pub").read_text().split()[:2])
        known_hosts = work / "known_hosts"
        known_hosts.write_text(f"node-a {host_key}\nnode-b {other_host_key}\n")

        askpass = work / "askpass"
        askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$CAPTURE_PASSPHRASE"\n')
        askpass.chmod(0o700)

        agent_socket = work / "agent.sock"
        proxy_socket = work / "proxy.sock"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "SSH_AUTH_SOCK": str(proxy_socket),
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "CAPTURE_PASSPHRASE": "throwaway lock passphrase",
        }
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_socket], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_for(agent_socket.exists, "ssh-agent")
        recorder = Recorder(str(agent_socket), str(proxy_socket), outdir)
        proxy = recorder

        def ssh_add(*args, check=True):
            return run(["ssh-add", *args], env, check=check)

        ssh_base = ["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={known_hosts}",
                    "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                    "-o", "BatchMode=yes", "-o", "HostKeyAlias=node-a", "-o", "IdentitiesOnly=yes",
                    "-i", str(rsa), "-p", str(port), "root@127.0.0.1"]

        with recorder.step("list-empty", "ssh-add -l on an empty agent"):
            ssh_add("-l", check=False)
        for label, path in [("ed25519", ed25519), ("ecdsa-p256", p256), ("ecdsa-p384", p384),
                            ("ecdsa-p521", p521), ("rsa-3072", rsa)]:
            with recorder.step(f"add-{label}", f"ssh-add of a plain {label} key"):
                ssh_add(path)
        with recorder.step("list-keys", "ssh-add -l with five keys"):
            ssh_add("-l")

        message = work / "message"
        message.write_text("signed by airlock's capture script\n")
        for label, path in [("ed25519", ed25519), ("ecdsa-p256", p256)]:
            # ssh-keygen first lists identities to find the key; only the signing is kept.
            with recorder.step(f"sshsig-{label}", f"ssh-keygen -Y sign -n git with {label}", keep={13, 14}):
                run(["ssh-keygen", "-Y", "sign", "-n", "git", "-f", path, message], env)
                pathlib.Path(f"{message}.sig").unlink()

        with recorder.step("add-lifetime", "ssh-add -t 60 (lifetime constraint)"):
            ssh_add("-t", "60", lifetime)
        with recorder.step("add-confirm", "ssh-add -c (confirm constraint)"):
            ssh_add("-c", confirm)
        with recorder.step("add-destination",
                           "ssh-add -h node-a -h 'node-a>root@node-b' (restrict-destination-v00@openssh.com)"):
            ssh_add("-H", known_hosts, "-h", "node-a", "-h", "node-a>root@node-b", destination)
        # A destination-constrained key is listed on an unbound connection but may not sign there
        # (ssh-keygen then falls back to the key file); only the refused sign is kept.
        with recorder.step("sshsig-destination-refused",
                           "ssh-keygen -Y sign with the destination-constrained key on an unbound connection",
                           keep={13, 5}):
            run(["ssh-keygen", "-Y", "sign", "-n", "git", "-f", destination, message], env, check=False)
            with contextlib.suppress(FileNotFoundError):
                pathlib.Path(f"{message}.sig").unlink()
        with recorder.step("add-cert", "ssh-add of an ed25519 key with its user certificate (key, then cert)"):
            ssh_add(certified)

        with recorder.step("ssh-rsa-sha2-512",
                           "ssh -A to a local sshd with rsa-3072 (bind, list, sign) running `ssh-add -l` there over the forwarded agent"):
            run(ssh_base[:1] + ["-A"] + ssh_base[1:] + ["ssh-add", "-l"], env)
        with recorder.step("ssh-rsa-sha2-256", "ssh with PubkeyAcceptedAlgorithms=rsa-sha2-256", keep={13, 14}):
            run(ssh_base[:1] + ["-o", "PubkeyAcceptedAlgorithms=rsa-sha2-256"] + ssh_base[1:] + ["true"], env)
        sshd_text = sshd_log.read_text(errors="replace")
        for algorithm in ("rsa-sha2-512", "rsa-sha2-256"):
            if f"signature using {algorithm} verified" not in sshd_text:
                sys.exit(f"sshd log does not show {algorithm}")

        with recorder.step("remove", "ssh-add -d of the ed25519 key"):
            ssh_add("-d", f"{ed25519}.pub")
        with recorder.step("remove-missing", "ssh-add -d of the same key again (agent refuses)"):
            ssh_add("-d", f"{ed25519}.pub", check=False)
        with recorder.step("lock", "ssh-add -x (passphrase from SSH_ASKPASS)"):
            ssh_add("-x")
        with recorder.step("unlock-wrong", "ssh-add -X with the wrong passphrase (agent refuses)"):
            run(["ssh-add", "-X"], {**env, "CAPTURE_PASSPHRASE": "wrong"}, check=False)
        with recorder.step("unlock", "ssh-add -X with the right passphrase"):
            ssh_add("-X")
        # ssh-add -D also sends the SSH-1 REMOVE_ALL_RSA_IDENTITIES (9) and ignores the reply.
        with recorder.step("remove-all", "ssh-add -D"):
            ssh_add("-D")

        version = run(["ssh", "-V"], env).stderr.strip()
        write_readme(outdir, recorder.index, version)
        print(f"{len(recorder.index)} frames written to {outdir}")
    finally:
        for process in (agent, sshd):
            if process is not None:
                process.terminate()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)


def write_readme(outdir, index, version):
    lines = [
        "# Captured OpenSSH agent frames",
        "",
        f"Real traffic between OpenSSH clients and OpenSSH's `ssh-agent` ({version}), recorded by",
        "`record.py` in this directory (`python3 record.py`, as root, needs openssh-client and",
        "openssh-server). Each file is one whole frame, the 4-byte length included, named",
        "`NNN-<req|resp>-<message type>-<step>.bin`; NNN is the order on the wire.",
        "",
        "**Every key in these files is a throwaway test key** made by `ssh-keygen` for the recording",
        "and deleted afterwards (including the private halves inside the add-identity frames). They",
        "protect nothing. Re-running the script replaces every file with new keys.",
        "",
        "| file | what it is |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {text} |" for name, text in index]
    (outdir / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
