"""Backbones named by Hugging Face Hub id (`name` or `org/name`, optional `@revision`), fetched with
`huggingface_hub` into its own cache and pinned to the commit actually used.

Only the files minbert reads are fetched (config, tokenizer files, `model.safetensors`; `pytorch_model.bin`
only when the repository has no safetensors). The cache folder, offline mode and the endpoint are
huggingface_hub's (HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT); every failure is one
`CheckpointError` line naming the id, and the cache folder where that helps.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

HUB_FILES = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "model.safetensors"]
LEGACY_WEIGHTS = "pytorch_model.bin"
_REVISION = re.compile(r"[^\s@]+")
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubId:
    repo_id: str  # `name` or `org/name`
    revision: str | None  # a branch, tag or commit; None = the default branch

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class Snapshot:
    """One commit of a Hub repository in the local cache."""

    repo_id: str
    commit: str  # the 40-hex commit hash
    folder: Path  # CACHE/models--ORG--NAME/snapshots/COMMIT

    @property
    def pinned(self) -> str:
        """The spec that names exactly these files again: `org/name@commit`."""
        return f"{self.repo_id}@{self.commit}"


def parse_hub_id(spec: str) -> HubId | None:
    """`org/name@revision` as a HubId, or None when `spec` is not shaped like a Hub id (a path, say)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, _, revision = spec.partition("@")
    if "@" in spec and not _REVISION.fullmatch(revision):
        return None
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    return HubId(repo_id, revision or None)


def cache_folder() -> str:
    """The cache huggingface_hub uses in this process (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _download_hint(hub_id: HubId) -> str:
    return f"`hf download {hub_id.repo_id}" + (f" --revision {hub_id.revision}`" if hub_id.revision else "`")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def cached_commit(hub_id: HubId) -> Snapshot | None:
    """A commit (immutable) already in the cache with a config and weights: no Hub request needed, so a
    resume or re-run of a pinned `org/name@commit` is a local look-up (and never waits on a dead network)."""
    from huggingface_hub import try_to_load_from_cache

    if hub_id.revision is None or not _COMMIT.fullmatch(hub_id.revision):
        return None
    config = try_to_load_from_cache(hub_id.repo_id, "config.json", revision=hub_id.revision)
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    if not any((folder / weights).is_file() for weights in ("model.safetensors", LEGACY_WEIGHTS)):
        return None
    return Snapshot(hub_id.repo_id, hub_id.revision, folder)


def fetch_snapshot(hub_id: HubId) -> Snapshot:
    """The cached snapshot of `hub_id` with the files minbert reads, downloading what is missing (unless offline)."""
    from huggingface_hub import constants, errors, snapshot_download
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    IncompleteSnapshotError = getattr(errors, "IncompleteSnapshotError", ())  # newer huggingface_hub only

    cache, name = cache_folder(), str(hub_id)
    cached = cached_commit(hub_id)
    if cached is not None:
        return cached
    try:
        folder = Path(snapshot_download(hub_id.repo_id, revision=hub_id.revision, allow_patterns=HUB_FILES))
        if not (folder / "model.safetensors").is_file():  # an older repository: its .bin, at the same commit
            folder = Path(snapshot_download(hub_id.repo_id, revision=folder.name,
                                            allow_patterns=[*HUB_FILES, LEGACY_WEIGHTS]))
    except IncompleteSnapshotError as e:
        raise CheckpointError(f"{name}: the cached copy in {cache} misses files and the Hub cannot be reached; "
                              f"complete it online with {_download_hint(hub_id)}") from e
    except LocalEntryNotFoundError as e:
        if constants.HF_HUB_OFFLINE:
            cached_repo = (Path(cache) / repo_folder_name(repo_id=hub_id.repo_id, repo_type="model")).is_dir()
            what = f"revision {hub_id.revision or 'main'} is not" if cached_repo else "not"
            raise CheckpointError(f"{name}: not a local folder, and {what} in the Hugging Face cache {cache} while "
                                  f"HF_HUB_OFFLINE=1; fetch it once online ({_download_hint(hub_id)}, or run again "
                                  "without HF_HUB_OFFLINE), or point HF_HUB_CACHE at a cache that has it") from e
        raise CheckpointError(f"{name}: cannot reach the Hugging Face Hub and it is not in the cache {cache}; "
                              f"check the connection (or HF_ENDPOINT), or fetch it where there is one with "
                              f"{_download_hint(hub_id)}") from e
    except GatedRepoError as e:
        raise CheckpointError(f"{name}: Hub model {hub_id.repo_id} is gated: accept its terms on its Hub page, "
                              "then log in with `hf auth login`") from e
    except RepositoryNotFoundError as e:
        raise CheckpointError(f"{name}: no such local folder, and no Hub model {hub_id.repo_id} "
                              "(if it is private, log in with `hf auth login`)") from e
    except RevisionNotFoundError as e:
        raise CheckpointError(f"{name}: Hub model {hub_id.repo_id} has no revision {hub_id.revision!r}") from e
    except HfHubHTTPError as e:
        raise CheckpointError(f"{name}: the Hugging Face Hub refused the download ({_first_line(e)})") from e
    except OSError as e:  # the cache itself: permissions, a full disk
        raise CheckpointError(f"{name}: cannot use the Hugging Face cache {cache} ({_first_line(e)})") from e
    except Exception as e:  # network errors outside the ones huggingface_hub folds into the above (a proxy)
        raise CheckpointError(f"{name}: cannot fetch from the Hugging Face Hub ({type(e).__name__}: "
                              f"{_first_line(e)})") from e
    if not _COMMIT.fullmatch(folder.name):
        raise CheckpointError(f"{name}: huggingface_hub returned {folder}, not a snapshot folder named by its commit")
    return Snapshot(hub_id.repo_id, folder.name, folder)
