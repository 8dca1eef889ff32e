"""The condensation methods, one file each; the registry imports every module here on first use."""
