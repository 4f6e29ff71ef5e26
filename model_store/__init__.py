"""The model store: the only contract between training (writer) and serving (reader).

Owns the artifact format (manifest, checksums) and the codec. Imports neither side.
"""

from model_store.manifest import (
    DECODER_STEP_INPUTS,
    DECODER_STEP_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    FORMAT_VERSION,
    MANIFEST_FILE,
    ArtifactIntegrityError,
    GraphSpec,
    Manifest,
    ManifestError,
    SpecialTokens,
    list_models,
    list_versions,
    read_manifest,
    resolve_artifact,
    sha256_file,
    verify_artifact,
    write_manifest,
)

__all__ = [
    "DECODER_STEP_INPUTS",
    "DECODER_STEP_OUTPUTS",
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ArtifactIntegrityError",
    "GraphSpec",
    "Manifest",
    "ManifestError",
    "SpecialTokens",
    "list_models",
    "list_versions",
    "read_manifest",
    "resolve_artifact",
    "sha256_file",
    "verify_artifact",
    "write_manifest",
]
