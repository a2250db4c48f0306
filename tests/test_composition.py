"""Objects are composed, not copied: no module copies another object's ``__dict__`` or sets another
object's private attributes or another module's state, and a search changes no FAISS setting that
another search would see (its own settings travel with it); the index set's writer mode is a block."""

from __future__ import annotations

import ast
from pathlib import Path

import faiss
import numpy as np
import pytest
from test_index import DIM, unit

from ibsearch.index import FaissIndex, LiveIndex, SearchTuning
from ibsearch.index_sync import IndexSet
from ibsearch.store import FileEntry, Store, VectorEntry

PACKAGE = Path(__file__).parent.parent / "ibsearch"
OWN = {"self", "cls"}
#: Settings of other modules that ibsearch changes on purpose, once, when it is imported (and why).
SET_AT_IMPORT = {
    # BLAS from a couple of queries on (index/exact.py: BLAS_THRESHOLD), never changed by a search
    ("index/exact.py", "faiss.cvar.distance_compute_blas_threshold"),
    # Torch reads its quantized engine only when a layer is prepacked (a prepacked layer runs its own
    # engine's kernels whatever is set later): int8 towers switch it under a lock for their prepacking
    # and put it back (tests/test_precision.py checks that it is back).
    ("encoder/runtime.py", "torch.backends.quantized.engine"),
}
#: FAISS calls that change a process-wide setting.
FAISS_SETTERS = ("omp_set_num_threads", "set_index_parameter", "set_index_parameters")
#: FAISS's process-wide settings that a search could change (``faiss.cvar``).
FAISS_CVARS = (
    "distance_compute_blas_threshold",
    "distance_compute_blas_query_bs",
    "distance_compute_blas_database_bs",
    "distance_compute_min_k_reservoir",
)


def _dotted(node: ast.expr) -> str:
    """``a.b.c`` of an attribute chain (``?`` for what is not a name)."""
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _imported(tree: ast.Module) -> set[str]:
    """Names bound to other modules or their objects: imports, and module-level aliases of them."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Name) and value.id in names:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _private(attr: str) -> bool:
    """Whether ``attr`` is an object's own business: ``_x``, and of the dunders its state and class
    (``fn.__name__ = ...`` renames a function through its public protocol)."""
    dunder = attr.startswith("__") and attr.endswith("__")
    return attr in ("__dict__", "__class__") or (attr.startswith("_") and not dunder)


def _targets(node: ast.AST) -> list[ast.expr]:
    """What an assignment (or ``del``) writes to, tuples unpacked."""
    if isinstance(node, ast.Assign | ast.Delete):
        found = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        found = [node.target]
    else:
        return []
    flat = []
    while found:
        target = found.pop()
        if isinstance(target, ast.Tuple | ast.List):
            found += target.elts
        else:
            flat.append(target.value if isinstance(target, ast.Starred) else target)
    return flat


def state_violations(source: str, where: str) -> list[str]:
    """Each place in ``source`` that copies another object's ``__dict__``, sets another object's
    private attribute (``obj._x = ...``, ``setattr(obj, "_x", ...)``), or sets another module's state
    (``faiss.cvar.x = ...``, ``faiss.omp_set_num_threads(...)``), as ``where:line: what``."""
    tree = ast.parse(source)
    imported, found = _imported(tree), []
    module = where.split("ibsearch/", 1)[-1]
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr == "__dict__" and _root(node) not in OWN:
            found.append(f"{line}: reads {_dotted(node)} (wrap the object instead of copying its state)")
        for target in _targets(node):
            if not isinstance(target, ast.Attribute):
                continue
            owner = target.value
            if _private(target.attr) and not (isinstance(owner, ast.Name) and owner.id in OWN):
                found.append(f"{line}: sets {_dotted(target)}, another object's private attribute")
            elif _root(target) in imported and (module, _dotted(target)) not in SET_AT_IMPORT:
                found.append(f"{line}: sets {_dotted(target)}, another module's state")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in ("setattr", "delattr", "object.__setattr__", "vars") and node.args:
            obj = node.args[0]
            attr = node.args[1] if len(node.args) > 1 else None
            mine = isinstance(obj, ast.Name) and obj.id in OWN
            private = isinstance(attr, ast.Constant) and _private(str(attr.value))
            if name == "vars" and not mine:
                found.append(f"{line}: reads vars() of another object")
            elif name != "vars" and not mine and (private or _root(obj) in imported):
                found.append(f"{line}: {name} on another object or module")
        if name.split(".")[-1] in FAISS_SETTERS:
            found.append(f"{line}: calls {name}, a process-wide FAISS setting")
    return found


def test_no_module_copies_another_objects_state_or_sets_its_private_attributes_or_another_modules():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += state_violations(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert found == []


@pytest.mark.parametrize(
    "code",
    [
        "live.__dict__.update(index.__dict__)",
        "self.__dict__.update(other.__dict__)",
        "state = dict(vars(index))",
        "index._mirror = None",
        "index.device, index._mirror = device, None",
        "self.index._cache += 1",
        "index.__class__ = LiveIndex",
        "del index._mirror",
        "setattr(index, '_mirror', None)",
        "object.__setattr__(other, '_x', 1)",
        "import faiss\nfaiss.cvar.distance_compute_blas_database_bs = 16384",
        "import faiss\ndef f():\n    faiss.omp_set_num_threads(1)",
        "import faiss\n_faiss = faiss\n_faiss.cvar.x = 1",
        "from . import policy\npolicy.DEFAULT = 3",
        "import numpy as np\nsetattr(np, 'x', 1)",
    ],
)
def test_the_state_check_finds_each_way_of_reaching_into_another_object(code):
    assert state_violations(code, "ibsearch/example.py"), code


def test_the_state_check_lets_an_object_set_its_own_state_and_its_parts_public_settings():
    own = (
        "class A:\n"
        "    def __init__(self, index):\n"
        "        self._index = index\n"
        "        self._index.parallel_mode = 0\n"
        "        self.__dict__['x'] = 1\n"
        "        object.__setattr__(self, 'path', 'p')\n"
        "    @classmethod\n"
        "    def make(cls):\n"
        "        self = cls.__new__(cls)\n"
        "        self._index, self.size = None, 0\n"
        "        cls._count = 1\n"
        "        return self\n"
        "def f(ivf, quantizer, fn):\n"
        "    ivf.quantizer = quantizer\n"
        "    fn.__name__ = 'import'\n"
    )
    assert state_violations(own, "ibsearch/example.py") == []


def faiss_settings(*indexes: FaissIndex) -> dict[str, object]:
    """FAISS's process-wide settings, and the settings of ``indexes`` that a ``ParameterSpace`` or a
    search could set on them (lists probed, a graph quantizer's efSearch)."""
    found: dict[str, object] = {name: getattr(faiss.cvar, name) for name in FAISS_CVARS}
    found["omp_threads"] = faiss.omp_get_max_threads()
    for n, index in enumerate(indexes):
        if index.approximate:
            ivf = faiss.extract_index_ivf(index.raw)
            found[f"{n}.nprobe"] = ivf.nprobe
            quantizer = faiss.downcast_index(ivf.quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                found[f"{n}.efSearch"] = quantizer.hnsw.efSearch
    return found


def test_searches_of_every_kind_change_no_faiss_setting_that_another_search_would_see():
    vectors, ids = unit(3000, seed=31), np.arange(3000, dtype=np.int64) * 3 + 1
    indexes = [FaissIndex(DIM)]
    for spec in ("IVF16,Flat", "IVF16_HNSW8,SQ8", f"IVF16,PQ{DIM // 4}x4fs,Refine(SQ8)"):
        indexes.append(FaissIndex(DIM, spec, nprobe=4))
        indexes[-1].train(vectors)
    for index in indexes:
        index.add(ids, vectors)

    def fetch(wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.searchsorted(ids, wanted)
        return ids[at], vectors[at]

    live = LiveIndex(indexes[2], fetch, full_scan_below=50)
    before = faiss_settings(*indexes)
    allowed = ids[::7]
    for nq in (1, 3, 40):  # one query; fewer than the threads; a batch (BLAS over big blocks before)
        q = unit(nq, seed=nq)
        for index in indexes:
            index.search(q, 10)
            index.search(q, 10, allowed, nprobe=16)
            assert faiss_settings(*indexes) == before, (index.spec, nq)
        live.search(q, 10, ids[:40])  # exact over the filter's vectors
        live.search(q, 10, allowed, tuning=SearchTuning(full_scan_below=0))  # inside IVF, more lists
        assert faiss_settings(*indexes) == before, nq


def test_a_search_takes_its_tuning_with_it_and_leaves_the_index_as_it_was():
    vectors, ids = unit(2000, seed=32), np.arange(2000, dtype=np.int64)
    base = FaissIndex(DIM, "IVF16,Flat", nprobe=2)
    base.train(vectors)
    base.add(ids, vectors)
    fetched = []

    def fetch(wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fetched.append(len(wanted))
        return wanted, vectors[wanted]

    live = LiveIndex(base, fetch, full_scan_below=100)
    assert live.base is base and live.spec == base.spec and live.nprobe == 2 and live.ntotal == 2000
    allowed = ids[::40]  # 50 vectors
    live.search(vectors[:1], 5, allowed)
    assert fetched == [50]  # at most full_scan_below: exact over the filter's vectors
    found = live.search(vectors[:1], 5, allowed, tuning=SearchTuning(full_scan_below=10))[1]
    assert fetched[1:] in ([], [50]) and np.isin(found, allowed).all()  # inside IVF (or its fallback)
    assert live.full_scan_below == 100 and live.nprobe == 2  # nothing of the search stayed behind


def test_the_index_set_is_a_writer_inside_its_writing_block_only_and_saves_when_it_ends(tmp_path):
    vectors = unit(6, seed=33)
    with Store(tmp_path / "ibsearch.db") as store:
        store.bind_model("m", DIM)
        indexes = IndexSet(tmp_path, store, DIM, "m")
        leftover = tmp_path / ".vision.faiss.killed.tmp"  # a temporary file of a save that was killed
        assert indexes.remove_leftovers() == [] and not indexes.writer  # no mode switched on the side
        leftover.write_bytes(b"half a save")
        with pytest.raises(RuntimeError, match="the write failed"), indexes.writing():
            assert indexes.writer and not leftover.exists()
            for i, vector in enumerate(vectors):
                stored = store.upsert_file(
                    FileEntry(f"/a/{i}.jpg", size=1, mtime_ns=1, content_hash=str(i), modality="vision"),
                    [VectorEntry(vector, "vision")],
                )
                indexes.add("vision", stored.vector_ids, vector[None, :])
            raise RuntimeError("the write failed")  # what was committed is saved all the same
        assert not indexes.writer and indexes.dirty == set()
        assert FaissIndex.load(indexes.path("vision")).summary() == store.vectors.id_summary("vision")
