#!/usr/bin/env python3
"""pynetdicom SCU for tests: one association over TLS (or plain), one operation.

  pynd_scu.py HOST PORT --called AE --calling AE [--ca CA] [--cert C --key K] [--plain]
              [--bind SOURCE-IP]
              (echo | store FILE... | find | move DEST | get PATIENTID | seq STEP...)

`seq` runs several operations on ONE association; steps are `echo`, `find`,
`store:FILE` and `move:DEST`.

Prints one line per result, e.g. `ECHO 0x0000`, `STORE 0x0000 file`, `FIND 0x0124`,
`MOVE 0x0124`, `GET 0x0000 1` (status, instances received), `REJECTED 1 1 3`, `ABORTED`. Exit: 0 all success, 2 rejected, 3 aborted or
TLS failure, 4 a non-success status.
"""
import argparse
import os
import ssl
import sys

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    RTPlanStorage,
    Verification,
)


def main():
    if os.environ.get("PYND_DEBUG"):
        from pynetdicom import debug_logger

        debug_logger()
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--called", default="ORTHANC")
    p.add_argument("--calling", default="PYNETDICOM")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--plain", action="store_true")
    p.add_argument("--bind", help="local source address (e.g. 127.0.0.2)")
    p.add_argument("op", choices=["echo", "store", "find", "move", "get", "seq"])
    p.add_argument("files", nargs="*")
    a = p.parse_args()

    ae = AE(ae_title=a.calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    if a.op == "echo":
        ae.add_requested_context(Verification)
    elif a.op == "find":
        ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    elif a.op == "get":
        # C-GET: the instances come back as C-STORE sub-operations on this association,
        # so we propose CT storage with the SCP role (PS3.7 D.3.3.4) and answer each one.
        ae.add_requested_context(PatientRootQueryRetrieveInformationModelGet)
        ae.add_requested_context(CTImageStorage)
    elif a.op in ("move", "seq"):
        for sop in (
            Verification,
            PatientRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelMove,
            CTImageStorage,
            MRImageStorage,
            RTPlanStorage,
        ):
            ae.add_requested_context(sop)
    else:
        ae.requested_contexts = StoragePresentationContexts
    tls = None
    if not a.plain:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key)
        tls = (ctx, "localhost")
    # The A-ASSOCIATE-RJ as received on the wire: pynetdicom 3.0.4 sometimes lets the
    # transport close overtake the decoded RJ and reports an abort instead.
    rj = []
    received = []

    def on_store(event):
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    def on_pdu(event):
        if event.pdu.__class__.__name__ == "A_ASSOCIATE_RJ":
            rj.append((event.pdu.result, event.pdu.source, event.pdu.reason_diagnostic))

    try:
        assoc = ae.associate(
            a.host,
            a.port,
            ae_title=a.called,
            tls_args=tls,
            bind_address=(a.bind, 0) if a.bind else None,
            ext_neg=[build_role(CTImageStorage, scp_role=True)] if a.op == "get" else None,
            evt_handlers=[(evt.EVT_PDU_RECV, on_pdu), (evt.EVT_C_STORE, on_store)],
        )
    except (ssl.SSLError, OSError) as e:
        print("TLSERROR", e)
        return 3
    if assoc.is_rejected:
        r = assoc.acceptor.primitive
        print("REJECTED", r.result, r.result_source, r.diagnostic)
        return 2
    if not assoc.is_established and rj:
        print("REJECTED", *rj[0])
        return 2
    if not assoc.is_established:
        print("ABORTED")
        return 3
    worst = 0
    if a.op == "seq":
        steps = a.files
    elif a.op == "store":
        steps = ["store:" + f for f in a.files]
    elif a.op == "move":
        steps = ["move:" + f for f in a.files]
    elif a.op == "get":
        last = None
        q = Dataset()
        q.QueryRetrieveLevel = "PATIENT"
        q.PatientID = a.files[0]
        for status, _ in assoc.send_c_get(q, PatientRootQueryRetrieveInformationModelGet):
            last = status
        steps = []
        worst = report("GET", last, str(len(received)))
    else:
        steps = [a.op]
    for step in steps:
        if assoc.is_aborted:
            break
        worst = max(worst, run(assoc, step))
    if assoc.is_aborted:
        print("ABORTED")
        return 3
    assoc.release()
    return worst


def run(assoc, step):
    op, _, arg = step.partition(":")
    if op == "echo":
        return report("ECHO", assoc.send_c_echo(), "")
    if op == "store":
        return report("STORE", assoc.send_c_store(dcmread(arg)), arg)
    q = Dataset()
    q.QueryRetrieveLevel = "PATIENT"
    q.PatientID = "*"
    last = None
    if op == "find":
        for status, _ in assoc.send_c_find(q, PatientRootQueryRetrieveInformationModelFind):
            last = status
        return report("FIND", last, "")
    for status, _ in assoc.send_c_move(q, arg, PatientRootQueryRetrieveInformationModelMove):
        last = status
    return report("MOVE", last, arg)


def report(op, status, what):
    if status is None or "Status" not in status:
        print(op, "NONE", what)
        return 3
    code = status.Status
    print(op, "0x%04x" % code, what)
    return 0 if code in (0x0000, 0xFF00, 0xFF01) else 4


if __name__ == "__main__":
    sys.exit(main())
