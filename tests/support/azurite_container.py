"""Create a blob container in Azurite (the devstoreaccount1 emulator account) with a
SharedKey-signed REST call, stdlib only: python3 azurite_container.py PORT NAME.
Exit 0 when created or already there, 1 otherwise (so callers can poll readiness)."""
import base64
import email.utils
import hashlib
import hmac
import sys
import urllib.error
import urllib.request

port, container = sys.argv[1], sys.argv[2]
account = "devstoreaccount1"
# Azurite's published, well-known development key (not a secret).
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date = email.utils.formatdate(usegmt=True)
version = "2021-08-06"
path = f"/{account}/{container}"
headers = f"x-ms-date:{date}\nx-ms-version:{version}"
# VERB, Content-Encoding, -Language, -Length (empty for 0), -MD5, -Type, Date,
# If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range.
fields = ["PUT", "", "", "", "", "application/octet-stream"] + [""] * 6
to_sign = "\n".join(fields + [headers, f"/{account}{path}\nrestype:container"])
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(
    f"http://127.0.0.1:{port}{path}?restype=container",
    method="PUT",
    data=b"",
    headers={"Content-Type": "application/octet-stream", "x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {account}:{sig}"},
)
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:
        print(e.code, e.read()[:300], file=sys.stderr)
        sys.exit(1)
except OSError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
