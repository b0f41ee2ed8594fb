"""ansible-test's pip bootstrap without its download host (which this project's machines
cannot reach): pip from the interpreter's own ``ensurepip``, then what ansible-test asked
for (the pip version it pins) from the package index. ansible-test runs this file in place
of its ``get-pip`` script when it is saved where ansible-test caches that script
(``~/.ansible/test/cache/get_pip_<version>.py``); the tests put it there under a private HOME.

ansible-test runs pip with a minimal environment (no PIP_CERT, no proxy variables): the
venv gets a pip.conf naming the operating system's CA bundle (what OpenSSL trusts here),
so pip trusts what this machine trusts, for this install and every later one in the venv."""

import ensurepip
import os
import ssl
import subprocess
import sys

paths = ssl.get_default_verify_paths()
# the system's bundle first (update-ca-certificates keeps what the machine trusts there),
# then OpenSSL's own default
SYSTEM = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
bundle = next((p for p in (os.environ.get("SSL_CERT_FILE"), *SYSTEM, paths.openssl_cafile) if p and os.path.isfile(p)), None)
if bundle:
    with open(os.path.join(sys.prefix, "pip.conf"), "w") as f:
        f.write(f"[global]\ncert = {bundle}\n")
ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip set it to /dev/null for itself (no config file read): pip here reads the venv's
asked = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *asked]))
