# SPDX-License-Identifier: Apache-2.0
"""Reads a Managed HSM key's attestation data object through PyKCS11 (python3-pykcs11), for
t_attest_objects.sh. Usage: p11_attest_check.py MODE OUTDIR, the module in AKV_MODULE.

Modes (each prints "ok: ..." lines and exits 1 at the first failed expectation):
  read     the signer's attestation data object by label: CKA_VALUE, CKA_APPLICATION, CKA_PRIVATE,
           CKA_AKV_* into OUTDIR; no attestation certificate (the service's format has no key
           certificate), even for a search that asks; searches that do not ask (by CKA_ID, by
           class, none) do not return it; a search by CKA_AKV_ATTESTATION returns every
           attestation object
  refused  a hostile attestation (the emulator's attestation_tamper): the search by label returns
           the handle, its read answers CKR_OBJECT_HANDLE_INVALID, a second search returns
           nothing, and the key signs (OUTDIR/sig over OUTDIR/data, checked by the caller)
  rotate   handles held across a rotation (ROTATE_CMD rotates the key, the slot's ttl is short):
           the old handle keeps the old version's attestation, a new search finds the new one;
           C_DestroyObject and C_SetAttributeValue on an attestation object are refused
  generate a key pair generated through the module (C_GenerateKeyPair) has its attestation data
           object at once, naming its versioned kid (OUTDIR/made.json)
"""
import os
import subprocess
import sys
import time

import PyKCS11
from PyKCS11 import LowLevel as LL

CKR_ACTION_PROHIBITED = 0x1B  # PKCS#11 2.40, not in PyKCS11 1.5.12
CKA_AKV_VERSION = PyKCS11.CKA_VENDOR_DEFINED | 0x414B5602
CKA_AKV_KID = PyKCS11.CKA_VENDOR_DEFINED | 0x414B5601
CKA_AKV_ATTESTATION = PyKCS11.CKA_VENDOR_DEFINED | 0x414B5604
APPLICATION = "Azure Managed HSM key attestation"


def expect(cond, what):
    if not cond:
        print("not ok: " + what)
        sys.exit(1)
    print("ok: " + what)


def attr(session, obj, a):
    return bytes(session.getAttributeValue(obj, [a], allAsBinary=True)[0])


def find(session, template):
    return session.findObjects(template)


def main():
    mode, out = sys.argv[1], sys.argv[2]
    lib = PyKCS11.PyKCS11Lib()
    lib.load(os.environ["AKV_MODULE"])
    slot = lib.getSlotList(tokenPresent=True)[0]
    s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION)
    cert_tmpl = [(PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE), (PyKCS11.CKA_LABEL, "signer attestation")]
    data_tmpl = [(PyKCS11.CKA_CLASS, PyKCS11.CKO_DATA), (PyKCS11.CKA_LABEL, "signer attestation")]
    label_of = lambda o: bytes(s.getAttributeValue(o, [PyKCS11.CKA_LABEL], allAsBinary=True)[0]).decode()

    if mode == "read":
        datas = find(s, data_tmpl)
        expect(len(datas) == 1, "one data object labelled 'signer attestation'")
        expect(find(s, cert_tmpl) == [], "no attestation certificate, even for a search that asks by label")
        priv = find(s, [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, "signer")])
        expect(len(priv) == 1, "the signer's private key")
        key_id = attr(s, priv[0], PyKCS11.CKA_ID)
        d = datas[0]
        app = bytes(s.getAttributeValue(d, [PyKCS11.CKA_APPLICATION], allAsBinary=True)[0]).decode()
        expect(app == APPLICATION, "the data object's CKA_APPLICATION is '%s'" % APPLICATION)
        vals = s.getAttributeValue(d, [PyKCS11.CKA_PRIVATE, PyKCS11.CKA_TOKEN])
        expect(vals[0] is False and vals[1] is True, "CKA_PRIVATE false, CKA_TOKEN true")
        open(os.path.join(out, "attestation.json"), "wb").write(attr(s, d, PyKCS11.CKA_VALUE))
        open(os.path.join(out, "kid"), "wb").write(attr(s, d, CKA_AKV_KID))
        expect(attr(s, d, CKA_AKV_KID) == attr(s, priv[0], CKA_AKV_KID),
               "it names the key's version (CKA_AKV_KID)")
        by_id = find(s, [(PyKCS11.CKA_ID, key_id)])
        classes = sorted(s.getAttributeValue(o, [PyKCS11.CKA_CLASS])[0] for o in by_id)
        expect(classes == [PyKCS11.CKO_PUBLIC_KEY, PyKCS11.CKO_PRIVATE_KEY],
               "a search by the key's CKA_ID returns its key pair only")
        expect(find(s, [(PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE)]) == [],
               "a search for certificates returns none")
        labels = [label_of(o) for o in find(s, [])]
        expect(not any(l.endswith(" attestation") for l in labels), "an empty template returns no attestation object")
        every = find(s, [(CKA_AKV_ATTESTATION, [1])])  # a CK_BBOOL, given as its one byte
        got = sorted("%d %s" % (s.getAttributeValue(o, [PyKCS11.CKA_CLASS])[0], label_of(o)) for o in every)
        expect(got == ["0 aes attestation", "0 ec-signer attestation", "0 signer attestation"],
               "CKA_AKV_ATTESTATION=TRUE finds every attestation object, data objects only: %s" % got)
        by_app = find(s, [(PyKCS11.CKA_APPLICATION, APPLICATION)])
        expect(len(by_app) == 3, "CKA_APPLICATION finds the 3 data objects")
    elif mode == "refused":
        datas = find(s, data_tmpl)
        expect(len(datas) == 1, "the search by label returns the data object (nothing read yet)")
        try:
            s.getAttributeValue(datas[0], [PyKCS11.CKA_VALUE], allAsBinary=True)
            expect(False, "the read of a refused attestation fails")
        except PyKCS11.PyKCS11Error as e:
            expect(e.value == PyKCS11.CKR_OBJECT_HANDLE_INVALID,
                   "the read answers CKR_OBJECT_HANDLE_INVALID (%s)" % e)
        try:
            s.getAttributeValue(datas[0], [PyKCS11.CKA_LABEL])
            expect(False, "every later read of the handle fails")
        except PyKCS11.PyKCS11Error as e:
            expect(e.value == PyKCS11.CKR_OBJECT_HANDLE_INVALID, "a later read of its label too")
        expect(find(s, data_tmpl) == [], "searches no longer return the attestation object")
        priv = find(s, [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, "signer")])
        data = open(os.path.join(out, "data"), "rb").read()
        sig = s.sign(priv[0], data, PyKCS11.Mechanism(PyKCS11.CKM_SHA256_RSA_PKCS, None))
        open(os.path.join(out, "sig"), "wb").write(bytes(sig))
        expect(len(sig) == 384, "the key still signs (RSA-3072)")
    elif mode == "rotate":
        d1 = find(s, data_tmpl)
        expect(len(d1) == 1, "before the rotation: the attestation data object")
        v1 = attr(s, d1[0], CKA_AKV_VERSION)
        old = attr(s, d1[0], PyKCS11.CKA_VALUE)
        open(os.path.join(out, "old.json"), "wb").write(old)
        subprocess.run(["bash", "-c", os.environ["ROTATE_CMD"]], check=True, timeout=60)
        d2 = []
        for _ in range(20):  # bounded: the slot's ttl is 1 s
            time.sleep(0.5)
            d2 = find(s, data_tmpl)
            if len(d2) == 1 and attr(s, d2[0], CKA_AKV_VERSION) != v1:
                break
        expect(len(d2) == 1 and attr(s, d2[0], CKA_AKV_VERSION) != v1,
               "after the rotation a search finds the new version's attestation data object")
        expect(d2[0] != d1[0], "under a new handle")
        open(os.path.join(out, "new.json"), "wb").write(attr(s, d2[0], PyKCS11.CKA_VALUE))
        expect(attr(s, d1[0], PyKCS11.CKA_VALUE) == old,
               "the held handle still reads the old version's attestation")
        expect(attr(s, d1[0], CKA_AKV_VERSION) == v1, "and keeps the old version")
        open(os.path.join(out, "old-version"), "wb").write(v1)
        open(os.path.join(out, "new-version"), "wb").write(attr(s, d2[0], CKA_AKV_VERSION))
        # Writes: an attestation object cannot be destroyed (the slot allows destroying keys) nor
        # changed, and the attempt leaves the key in place.
        rw = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        for what, call in (("C_DestroyObject", lambda: rw.destroyObject(d1[0])),
                           ("C_SetAttributeValue", lambda: rw.setAttributeValue(d2[0], [(PyKCS11.CKA_LABEL, "x")]))):
            try:
                call()
                expect(False, what + " on an attestation object is refused")
            except PyKCS11.PyKCS11Error as e:
                expect(e.value == CKR_ACTION_PROHIBITED,
                       what + " on an attestation object: CKR_ACTION_PROHIBITED (%s)" % e)
        rw.closeSession()
        expect(len(find(s, [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, "signer")])) == 1,
               "the key is still there")
    elif mode == "generate":
        rw = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        p256 = bytes.fromhex("06082a8648ce3d030107")
        pub_t = [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
                 (PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_EC_PARAMS, p256), (PyKCS11.CKA_LABEL, "made")]
        priv_t = [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
                  (PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_LABEL, "made"), (PyKCS11.CKA_SIGN, True)]
        pub, _ = rw.generateKeyPair(pub_t, priv_t, mecha=PyKCS11.MechanismECGENERATEKEYPAIR)
        made = find(rw, [(PyKCS11.CKA_CLASS, PyKCS11.CKO_DATA), (PyKCS11.CKA_LABEL, "made attestation")])
        expect(len(made) == 1, "a key generated through the module has its attestation data object at once")
        expect(attr(rw, made[0], CKA_AKV_KID) == attr(rw, pub, CKA_AKV_KID),
               "it names the generated key's version")
        open(os.path.join(out, "made.json"), "wb").write(attr(rw, made[0], PyKCS11.CKA_VALUE))
        rw.closeSession()
    else:
        sys.exit("unknown mode " + mode)
    s.closeSession()


if __name__ == "__main__":
    main()
