"""Reading Keras 3 ``.weights.h5`` files (``model.save_weights(path)``) with h5py.

Only *how* to read lives here; the core (`d2lcompat._io`) maps the Keras paths
(``layers/dense_1/vars/0``) to structural names and transposes kernels.
"""

from __future__ import annotations

from typing import Any

_HDF5 = b"\x89HDF\r\n\x1a\n"


def read_keras_weights(path: str) -> tuple[str, dict[str, Any]] | None:
    """``("keras", {h5 path: array})`` for every dataset of a Keras 3 weights file, in
    file order; None when ``path`` is not an HDF5 file.

    Only bytes stored inside the file are read: a dataset whose data lives in other
    files (HDF5 external storage, a virtual dataset) and a link to another file (an
    external link) or to another path of this one (a soft link) raise
    `CheckpointError` naming it, before anything is read (Keras writes none of them;
    a file that has them could make a conversion copy any file the user can read)."""
    with open(path, "rb") as f:
        if f.read(8) != _HDF5:
            return None
    import h5py

    from d2lcompat._errors import CheckpointError

    def refuse(name: str, why: str) -> CheckpointError:
        return CheckpointError(
            f"Cannot load '{path}': its HDF5 object '/{name}' {why}. d2lcompat reads only "
            "the data stored inside a Keras .weights.h5 file (Keras writes neither links "
            "nor external data); nothing was loaded."
        )

    datasets: list[tuple[str, Any]] = []

    def walk(group: Any, prefix: str) -> None:
        for key in group:
            name = f"{prefix}{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise refuse(name, f"is an external link to '{link.filename}:{link.path}'")
            if isinstance(link, h5py.SoftLink):
                raise refuse(name, f"is a soft link to '{link.path}'")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                walk(obj, name + "/")
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    files = ", ".join(repr(e[0]) for e in obj.external)
                    raise refuse(name, f"keeps its data in external files ({files})")
                if obj.is_virtual:
                    raise refuse(name, "is a virtual dataset (its data lives in other datasets or files)")
                datasets.append((name, obj))

    with h5py.File(path, "r") as f:
        walk(f, "")
        out = {name: ds[()] for name, ds in datasets}
    if not out:
        raise ValueError("the HDF5 file holds no weights")
    return "keras", out
