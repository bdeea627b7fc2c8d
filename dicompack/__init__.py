"""dicompack: pack DICOM studies into standard File-sets, ZIPs and secure packages."""
__version__ = "0.1.0"
