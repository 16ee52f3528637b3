#!/usr/bin/env python3
"""pynetdicom SCU for tests: one association over TLS (or plain), one operation.

  pynd_scu.py HOST PORT --called AE --calling AE [--ca CA] [--cert C --key K] [--plain]
              (echo | store FILE... | find)

Prints one line per result, e.g. `ECHO 0x0000`, `STORE 0x0000 file`, `FIND 0x0124`,
`REJECTED 1 1 3`, `ABORTED`. Exit: 0 all success, 2 rejected, 3 aborted or TLS failure,
4 a non-success status.
"""
import argparse
import ssl
import sys

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind, Verification


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--called", default="ORTHANC")
    p.add_argument("--calling", default="PYNETDICOM")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--plain", action="store_true")
    p.add_argument("op", choices=["echo", "store", "find"])
    p.add_argument("files", nargs="*")
    a = p.parse_args()

    ae = AE(ae_title=a.calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    if a.op == "echo":
        ae.add_requested_context(Verification)
    elif a.op == "find":
        ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    else:
        ae.requested_contexts = StoragePresentationContexts
    tls = None
    if not a.plain:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key)
        tls = (ctx, "localhost")
    try:
        assoc = ae.associate(a.host, a.port, ae_title=a.called, tls_args=tls)
    except (ssl.SSLError, OSError) as e:
        print("TLSERROR", e)
        return 3
    if assoc.is_rejected:
        r = assoc.acceptor.primitive
        print("REJECTED", r.result, r.result_source, r.diagnostic)
        return 2
    if not assoc.is_established:
        print("ABORTED")
        return 3
    worst = 0
    if a.op == "echo":
        worst = report("ECHO", assoc.send_c_echo(), "")
    elif a.op == "store":
        for f in a.files:
            worst = max(worst, report("STORE", assoc.send_c_store(dcmread(f)), f))
    else:
        q = Dataset()
        q.QueryRetrieveLevel = "PATIENT"
        q.PatientID = "*"
        last = None
        for status, _ in assoc.send_c_find(q, PatientRootQueryRetrieveInformationModelFind):
            last = status
        worst = report("FIND", last, "")
    if assoc.is_aborted:
        print("ABORTED")
        return 3
    assoc.release()
    return worst


def report(op, status, what):
    if status is None or "Status" not in status:
        print(op, "NONE", what)
        return 3
    code = status.Status
    print(op, "0x%04x" % code, what)
    return 0 if code in (0x0000, 0xFF00, 0xFF01) else 4


if __name__ == "__main__":
    sys.exit(main())
