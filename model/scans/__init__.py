"""Reading what a user brings: PNG/JPEG/TIFF/BMP, DICOM (files and series), NIfTI and Analyze volumes, zip
archives, and which files make one scan. Imports no torch."""
