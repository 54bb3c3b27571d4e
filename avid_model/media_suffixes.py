"""The one list of media file suffixes the project accepts: training's folder scan
(``training.sources``) and the service's stored uploads (``services.uploads``) use it both."""

from __future__ import annotations

MEDIA_SUFFIXES = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv",
        ".3gp", ".wmv", ".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac",
    }
)  # fmt: skip

# The suffixes of sound-only files (``/embed/batch`` and ``avid client ingest`` send these
# to the audio endpoint when no kind is given).
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac"})
