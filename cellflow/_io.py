"""Writing files so that nothing is lost: every file cellflow writes appears whole or not at all.

A file is written to a temporary name in the target's own folder and then moved over the
target with :func:`os.replace`, which is atomic on POSIX and Windows when both names are on one
file system. A crash, a kill or a full disk in the middle of a write therefore leaves the
target as it was (the old file, or no file), never half written. The temporary file keeps the
target's suffix, so that writers which look at it (``.h5ad``, ``.png``) behave as for the
target.

A model folder is written whole into a temporary folder beside it and then moved into place
(:func:`model_folder`); ``config.json`` lists the size and SHA-256 of every other file in it,
so that :func:`read_model_config` can say which file of a damaged folder is wrong. Replacing a
model takes two renames (the old folder aside, the new one in); a process killed between them
leaves both aside, and the next save or load puts the complete one back
(:func:`recover_model_folder`).

Files and folders get the modes the user's umask gives new ones (0644 and 0755 under the usual
022), not the private 0600 of a temporary file. Temporary names carry the host and the process
id (``.NAME.tmp-HOST-PID-XXXX``), so that the leftovers of a killed process (a full-size
``.h5ad``, a model folder) are removed by the next write to the same target, and a write in
progress in another live process never is.

Example
-------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_path(d / "table.csv") as tmp:
...     _ = tmp.write_text("a,b\\n1,2\\n")
>>> (d / "table.csv").read_text()
'a,b\\n1,2\\n'
>>> sorted(p.name for p in d.iterdir())  # no temporary file is left behind
['table.csv']
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "write_text",
    "write_json",
    "write_csv",
    "write_h5ad",
    "save_figure",
    "torch_save",
    "check_output_file",
    "check_output_folder",
    "check_model_folder",
    "check_not_an_input",
    "refuse_overwrite",
    "model_folder",
    "recover_model_folder",
    "read_model_config",
    "MODEL_FILES",
    "IncompleteModelError",
]

#: The files a cellflow model folder may hold (``config.json`` lists the others it holds).
MODEL_FILES = (
    "config.json",
    "model.pt",
    "score.pt",
    "geodesic.pt",
    "growth.pt",
    "images.json",
    "tabular.json",
)


class IncompleteModelError(ValueError):
    """A model folder whose ``config.json`` or weight files are missing, damaged or do not match."""


def _umask() -> int:
    """The process's umask: read from ``/proc/self/status`` where there is one (setting the mask
    to read it would, for an instant, apply 0 to files other threads create), else by setting
    it and setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _tmp_prefix(name: str, kind: str = "tmp") -> str:
    """``.NAME.KIND-HOST-PID-``: the prefix of this process's temporary files for target
    ``NAME``."""
    return f".{name}.{kind}-{_host()}-{os.getpid()}-"


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale_temporaries(folder: Path, name: str, kind: str = "tmp") -> list[Path]:
    """Remove the temporary files and folders (``.NAME.KIND-HOST-PID-*``) that a process of
    this host left beside a target when it was killed; those of live processes are kept."""
    removed = []
    if not folder.is_dir():
        return removed
    head = f".{name}.{kind}-{_host()}-"
    for p in folder.iterdir():
        if not p.name.startswith(head):
            continue
        pid = p.name[len(head) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _dead(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; when the block ends without an exception, move it
    over ``path`` (:func:`os.replace`); otherwise remove it and leave ``path`` untouched. The
    leftovers of an earlier write to ``path`` by a killed process are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.stem)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path.stem), suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the user's usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def refuse_overwrite(existing: list[str], overwrite: bool) -> None:
    """Raise unless ``overwrite`` when ``existing`` (the AnnData keys a step would write, such as
    ``"obs['growth_prior']"``) is not empty: nothing the user owns is replaced without asking."""
    if existing and not overwrite:
        one = len(existing) == 1
        raise ValueError(
            f"{', '.join(existing)} already exist{'s' if one else ''}; pass overwrite=True to "
            "replace "
            f"{'it' if one else 'them'}, or choose another key_added."
        )


def check_not_an_input(path: str | Path, inputs, flag: str = "--out") -> Path:
    """Raise if the output ``path`` names one of the ``inputs`` (the same file, by any name):
    writing it would replace the user's data, whatever ``overwrite`` says."""
    path = Path(path)
    for given in inputs:
        given = Path(given)
        same = path.resolve() == given.resolve()
        if not same and path.exists() and given.exists():
            same = os.path.samefile(path, given)
        if same:
            raise ValueError(
                f"{flag} {path} names the input {given}: writing it would replace your data. "
                "Give another file name."
            )
    return path


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj, **kwargs) -> None:
    write_text(path, json.dumps(obj, indent=2, **kwargs))


def write_csv(df, path: str | Path, **kwargs) -> None:
    """``df.to_csv(path, **kwargs)``, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def write_h5ad(adata, path: str | Path) -> None:
    """``adata.write_h5ad(path)``, atomically: the target is the old file or the whole new one."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def save_figure(fig, path: str | Path, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)``, atomically (the format follows ``path``'s suffix)."""
    kwargs.setdefault("format", Path(path).suffix.lstrip(".") or None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)


def torch_save(obj, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def check_output_file(path: str | Path, overwrite: bool, flag: str = "overwrite=True") -> Path:
    """Raise before any work starts if ``path`` cannot be written: it exists (and not
    ``overwrite``), it is a folder, or its parent is a file. ``flag`` names the fix in the
    caller's words (``--overwrite`` on the command line)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {flag} to replace it.")
    _check_parent(path, f"cannot write {path}")
    return path


def _check_parent(path: Path, what: str) -> None:
    """Raise if the nearest existing folder above ``path`` is a file or is not writable."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{what}: {parent} is a file, not a folder.")
            if not os.access(parent, os.W_OK):
                raise PermissionError(f"{what}: {parent} is not writable.")
            return


def check_output_folder(path: str | Path, flag: str = "--out") -> Path:
    """Raise before any work starts if ``path`` cannot be the folder results go to: it is a
    file, or a parent of it is."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{flag} {path} is a file; give a folder for the results.")
    _check_parent(path, f"{flag} {path}")
    return path


def _is_model(path: Path) -> bool:
    """Whether the folder ``path`` holds a model cellflow wrote: a ``config.json`` listing its
    other files (``"files"``, which :func:`model_folder` writes) or, from before that list,
    naming its class (``"class_"``) or format (``"format_version"``)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and (
        isinstance(cfg.get("files"), dict) or "class_" in cfg or "format_version" in cfg
    )


def check_model_folder(path: str | Path, overwrite: bool, flag: str = "overwrite=True") -> Path:
    """Raise before any work starts if a model cannot be saved to the folder ``path``.

    A new or empty folder is fine. A folder that holds a model (files cellflow writes, with a
    ``config.json`` that cellflow wrote) is replaced only with ``overwrite``. A folder that holds
    anything else, a ``config.json`` of the user's own included, is never replaced: cellflow
    swaps a model folder in whole and would delete it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; a model is saved to a folder.")
    _check_parent(path, f"cannot save to {path}")
    recover_model_folder(path)
    if not path.is_dir():
        return path
    present = sorted(p.name for p in path.iterdir())
    if not present:
        return path
    foreign = [n for n in present if n not in MODEL_FILES]
    if not foreign and not _is_model(path):
        foreign = [n for n in present if n == "config.json"] or present
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{path} holds files that cellflow did not write ({shown}); a model folder is "
            "replaced whole, so save to a new or empty folder."
        )
    if not overwrite:
        raise FileExistsError(
            f"{path} already holds a model ({', '.join(present)}); pass {flag} to replace it, "
            "or choose another folder."
        )
    return path


def recover_model_folder(path: str | Path) -> bool:
    """Finish a model save that was killed between its two renames (:func:`model_folder`), when
    ``path`` is missing: the new model goes in if its folder is complete, else the old one comes
    back. Returns whether a model was put back."""
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    olds = [p for p in olds if (p / "model").is_dir()]
    if not olds:
        return False
    news = sorted(path.parent.glob(f".{path.name}.tmp-*"), key=lambda p: p.stat().st_mtime)
    for new in reversed(news):
        try:
            read_model_config(new)
        except (OSError, ValueError):
            continue
        os.replace(new, path)
        break
    else:
        os.replace(olds[-1] / "model", path)
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)
    return True


def _digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


@contextmanager
def model_folder(path: str | Path, overwrite: bool = False):
    """Yield a temporary folder to write a model's files into (``config.json`` among them); then
    record every other file's size and SHA-256 in ``config.json`` under ``"files"`` and move the
    folder to ``path``, replacing the model there (see :func:`check_model_folder`). Nothing is
    left behind from an older model, and an exception leaves ``path`` as it was."""
    path = check_model_folder(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path.name)))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["files"] = {
            p.name: _digest(p) for p in sorted(tmp.iterdir()) if p.name != "config.json"
        }
        cfg[CONFIG_DIGEST] = _config_digest(cfg)
        cfg_path.write_text(json.dumps(cfg, indent=2))
        if (
            path.exists()
        ):  # an old model (checked above): set it aside, move the new one in, delete the old
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path.name, "old")))
            os.replace(path, old / "model")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: the key of ``config.json`` that holds the SHA-256 of the rest of it
CONFIG_DIGEST = "config_sha256"


def _config_digest(cfg: dict) -> str:
    """SHA-256 of a model's settings (``config.json`` without its own digest), key order aside."""
    rest = {k: v for k, v in cfg.items() if k != CONFIG_DIGEST}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def read_model_config(path: str | Path, what: str = "model") -> dict:
    """``config.json`` of a model folder, after checking that it is readable JSON and that every
    file it lists is there with the recorded size and SHA-256; raises
    :class:`IncompleteModelError` naming the file that is wrong."""
    path = Path(path)
    incomplete = f"{path} does not hold a complete cellflow {what}"
    cfg_path = path / "config.json"
    recover_model_folder(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{path} is a file; a {what} is saved to a folder (config.json, model.pt)."
        )
    if not cfg_path.exists():
        raise FileNotFoundError(f"no config.json in {path}: is it a folder written by {what}.save?")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IncompleteModelError(
            f"{incomplete}: config.json is not valid JSON ({e}); save the model again."
        ) from None
    if not isinstance(cfg, dict):
        raise IncompleteModelError(
            f"{incomplete}: config.json does not hold a settings object; save the model again."
        )
    if CONFIG_DIGEST in cfg and cfg[CONFIG_DIGEST] != _config_digest(cfg):
        import warnings

        warnings.warn(
            f"{cfg_path} was edited after the model was saved (its settings no longer match the "
            "digest written with them); the model loads with the edited settings. Save it again "
            "to make them its own.",
            stacklevel=3,
        )
    for name, rec in (cfg.get("files") or {}).items():
        f = path / name
        if not f.exists():
            raise IncompleteModelError(f"{incomplete}: {name} is missing.")
        got = _digest(f)
        if got["bytes"] != rec.get("bytes") or got["sha256"] != rec.get("sha256"):
            raise IncompleteModelError(
                f"{incomplete}: {name} has {got['bytes']} bytes and another content than "
                f"config.json records ({rec.get('bytes')} bytes); it was truncated or "
                "replaced. Save the model again."
            )
    return cfg


def load_weights(path: str | Path, name: str, map_location=None, what: str = "model"):
    """``torch.load(path / name, weights_only=True)``, with a clear error for a damaged file."""
    import pickle

    import torch

    f = Path(path) / name
    if not f.exists():
        raise IncompleteModelError(
            f"{path} does not hold a complete cellflow {what}: {name} is missing."
        )
    try:
        return torch.load(f, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise  # not plain tensors: torch's message explains the refusal
        raise IncompleteModelError(
            f"{path} does not hold a complete cellflow {what}: {name} cannot be read ({e})."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise IncompleteModelError(
            f"{path} does not hold a complete cellflow {what}: {name} cannot be read "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
        ) from None
