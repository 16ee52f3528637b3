"""Write a multi-frame DICOM file of about SIZE_MIB MiB with a fresh SOP Instance UID
(tests and bench/storage.sh): python3 bigdicom.py OUT SIZE_MIB"""
import sys

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

out, size_mib = sys.argv[1], int(sys.argv[2])
ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
frame = bytes(ds.PixelData)
frames = max(1, size_mib * 1024 * 1024 // len(frame))
ds.NumberOfFrames = frames
ds.PixelData = frame * frames
# Pixel data last (no trailing padding), so its bytes end the file.
if 0xFFFCFFFC in ds:
    del ds[0xFFFCFFFC]
ds.SOPInstanceUID = generate_uid()
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.save_as(out)
